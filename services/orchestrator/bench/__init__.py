"""`asiarch bench discovery`: runs (runs.py), their numbers (numbers.py) and the page they make (page.py),
registered by cli.py."""
