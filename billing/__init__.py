"""Stripe's webhook receiver: verifies each delivery and hands it to the database."""
