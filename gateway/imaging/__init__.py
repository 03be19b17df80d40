"""Turning DICOM pixel data into viewable 8-bit images (PS3.3 C.11 LUTs) and encoding them."""

from gateway.imaging.render import (
    GreyValues,
    ImagingError,
    encode_image,
    read_and_render,
    read_dataset,
    render_dataset,
    stored_values,
)

__all__ = [
    "GreyValues",
    "ImagingError",
    "encode_image",
    "read_and_render",
    "read_dataset",
    "render_dataset",
    "stored_values",
]
