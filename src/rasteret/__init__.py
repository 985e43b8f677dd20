"""rasteret: index-first reads of cloud-optimized GeoTIFFs (public API being assembled)."""
