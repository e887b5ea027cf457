"""Datasets: deterministic synthetic MVTec-layout data and layout helpers."""
