"""Gold: a Kimball star schema (dimensions and an order fact) and a daily revenue mart."""
