"""Training, export and evaluation of the PickSpin complexity classifier (not on the serving path)."""
