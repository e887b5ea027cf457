"""Export stage (workstation only): anomalib training, OpenVINO IR, NNCF INT8, bundle.

This is the only package that imports torch, anomalib or nncf; the CLI imports it lazily.
"""
