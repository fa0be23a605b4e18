"""Silver layer jobs besides identity: orders, order lines and web events with their member."""
