"""What every check shares: its errors, its options and their validation."""
