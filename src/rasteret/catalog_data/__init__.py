"""Dataset descriptors shipped with rasteret (``datasets.json``), read by :mod:`rasteret.catalog`."""
