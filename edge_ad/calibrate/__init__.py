"""Threshold selection and metrics that run on the device (numpy only)."""
