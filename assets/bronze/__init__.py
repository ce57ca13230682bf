"""Bronze: the source feeds exactly as they arrived, duplicates and defects included."""
