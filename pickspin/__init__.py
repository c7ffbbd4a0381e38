"""PickSpin: pick the right self-hosted LLM for each prompt; spin backends up on demand, down to zero."""

__version__ = "0.1.0"
