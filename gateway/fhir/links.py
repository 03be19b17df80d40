"""Image and document links in FHIR resources, built when a resource is served, never frozen at publication.

Stored resources hold no host name. Publication writes *relative* links, which this module turns into
absolute ones on the way out (a read, vread, search, ``_include``, history, or an outgoing delivery):

- ``Media.content.url`` (R4): ``dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered``, the
  WADO-RS rendered resource (PS3.18 10.4.1.1.3), becomes ``{public base}/dicomweb/...``;
- the PDF in ``DiagnosticReport.presentedForm``: ``fhir/Binary/{id}`` becomes
  ``{public base}/fhir/Binary/{id}``;
- the IMR HTML rendition (``presentedForm`` text/html, embedded): each ``href``/``src`` that starts with
  ``dicomweb/`` becomes an absolute URL and, when a signer is given, a short-lived signed link
  (:mod:`gateway.auth.links`) issued to the client that asked, so that an ``<img>`` or ``<a>`` works in a
  browser without an ``Authorization`` header. ``size`` and ``hash`` of the attachment are recomputed.

``ImagingStudy.endpoint`` and ``ImagingSelection.endpoint`` reference the DICOMweb Endpoint, which
:mod:`gateway.fhir.endpoint` also builds when read. Links published before this scheme
(``http://host/images/{uid}.png`` and ``http://host/fhir/Binary/{id}``) are moved to the current base too.

The public base is ``[http] public_base_url``, else the base URL of the request (see ``gateway.fhir.api``).
Everything here is pure: a resource in, a resource out (a copy when anything changed).
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass
from typing import Any

from gateway.auth.links import LinkSigner

WADO = "dicomweb/"
_RELATIVE = ("dicomweb/", "fhir/")
_LEGACY = re.compile(
    r"^https?://[^?#\s]*?/((?:images/[0-9.]+\.(?:png|jpe?g)|fhir/Binary/[A-Za-z0-9\-.]+)(?:\?[^\s]*)?)$"
)
_HTML_LINK = re.compile(r'(href|src)="([^"]*)"')


def instance_path(study: str, series: str, sop: str) -> str:
    return f"{WADO}studies/{study}/series/{series}/instances/{sop}"


def rendered_path(study: str, series: str, sop: str) -> str:
    """The stored (relative) link to an instance's WADO-RS rendered image."""
    return instance_path(study, series, sop) + "/rendered"


def thumbnail_path(study: str, series: str, sop: str) -> str:
    return instance_path(study, series, sop) + "/thumbnail"


def binary_path(binary_id: str) -> str:
    return f"fhir/Binary/{binary_id}"


@dataclass(frozen=True)
class Links:
    """How links are built for one response: the public root URL (no trailing slash), and for links a
    browser opens from served HTML, a signer and the client the signatures are issued to."""

    root: str
    signer: LinkSigner | None = None
    client: str = ""

    def absolute(self, link: str) -> str:
        """A stored link as an absolute URL; anything not ours is returned unchanged."""
        if link.startswith(_RELATIVE):
            return f"{self.root}/{link}"
        legacy = _LEGACY.match(link)
        if legacy:
            return f"{self.root}/{legacy.group(1)}"
        return link

    def for_browser(self, link: str) -> str:
        """An absolute URL, signed when it is a DICOMweb link and a signer is configured."""
        if link.startswith(WADO) and self.signer is not None and self.signer.enabled:
            path, _, query = link.partition("?")
            return self.root + self.signer.sign("/" + path, self.client or "fhir", extra=query)
        return self.absolute(link)


def _html(data: bytes, links: Links) -> bytes:
    text = data.decode("utf-8")

    def swap(m: re.Match[str]) -> str:
        value = html.unescape(m.group(2))
        new = links.for_browser(value)
        return m.group(0) if new == value else f'{m.group(1)}="{html.escape(new, quote=True)}"'

    return _HTML_LINK.sub(swap, text).encode("utf-8")


def _attachment(att: dict[str, Any], links: Links) -> dict[str, Any]:
    out = att
    url = att.get("url")
    if isinstance(url, str):
        new = links.absolute(url)
        if new != url:
            out = {**out, "url": new}
    data = att.get("data")
    if isinstance(data, str) and str(att.get("contentType", "")).startswith("text/html"):
        raw = base64.b64decode(data)
        rewritten = _html(raw, links)
        if rewritten != raw:
            out = {
                **out,
                "data": base64.b64encode(rewritten).decode("ascii"),
                # R5 carries Attachment.size as integer64, a JSON string; R4 as an unsignedInt
                "size": str(len(rewritten)) if isinstance(att.get("size"), str) else len(rewritten),
                # Attachment.hash is base64 SHA-1 (FHIR R4 2.24.0.11)
                "hash": base64.b64encode(hashlib.sha1(rewritten).digest()).decode("ascii"),  # noqa: S324
            }
    return out


def resolve(resource: dict[str, Any], links: Links) -> dict[str, Any]:
    """``resource`` with its stored links made absolute (and HTML links signed); the same object when it has
    none. Binary resources are served as stored."""
    rtype = resource.get("resourceType")
    if rtype == "Media" and isinstance(resource.get("content"), dict):
        media = _attachment(resource["content"], links)
        return resource if media is resource["content"] else {**resource, "content": media}
    if rtype == "DiagnosticReport" and isinstance(resource.get("presentedForm"), list):
        forms = [_attachment(f, links) if isinstance(f, dict) else f for f in resource["presentedForm"]]
        if all(a is b for a, b in zip(forms, resource["presentedForm"], strict=True)):
            return resource
        return {**resource, "presentedForm": forms}
    if rtype == "DocumentReference" and isinstance(resource.get("content"), list):
        content = [
            {**c, "attachment": _attachment(c["attachment"], links)}
            if isinstance(c, dict) and isinstance(c.get("attachment"), dict)
            else c
            for c in resource["content"]
        ]
        return {**resource, "content": content}
    if rtype == "Bundle" and isinstance(resource.get("entry"), list):
        entries = [
            {**e, "resource": resolve(e["resource"], links)}
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            else e
            for e in resource["entry"]
        ]
        return {**resource, "entry": entries}
    return resource
