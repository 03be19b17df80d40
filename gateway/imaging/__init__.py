"""Turning DICOM pixel data into viewable 8-bit images (PS3.3 C.11 LUTs) and encoding them."""

from gateway.imaging.render import ImagingError, encode_image, read_and_render, render_dataset

__all__ = ["ImagingError", "encode_image", "read_and_render", "render_dataset"]
