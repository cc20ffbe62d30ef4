"""Compiled hot paths (built from src/_core/). Each module has a pure-Python twin named *_ref."""
