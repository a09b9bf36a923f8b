"""Raw datasets in nnU-Net v2 format: dataset.json schema, readers/writers, integrity check, converters."""
