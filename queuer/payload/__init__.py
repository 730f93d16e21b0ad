"""What a job carries: JSON arguments and results, and their encryption."""
