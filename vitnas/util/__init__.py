"""Plumbing every stage uses and no user calls: atomic files and folders, strict YAML, the
shipped data files, dtype names, devices, seeding. Nothing public; imports nothing above it.
"""
