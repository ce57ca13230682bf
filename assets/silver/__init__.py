"""Silver: typed, validated, deduplicated and PII-masked versions of the bronze feeds."""
