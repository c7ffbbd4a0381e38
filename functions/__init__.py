"""PickSpin's Knative functions: the router (Pick) and the complexity scorer."""
