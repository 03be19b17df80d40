"""Reading a general acknowledgement (ACK, HL7 v2.5.1 chapter 2, MSA and ERR segments)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.hl7.errors import Hl7Error
from gateway.hl7.escape import unescape


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA, AE, AR (or CA, CE, CR in enhanced mode)
    message_id: str  # MSA-2: the acknowledged MSH-10
    text: str  # MSA-3 and ERR-8, for the dead letter

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        """Rejected: retrying the same message cannot help (AR/CR)."""
        return self.code in ("AR", "CR")


def parse_ack(er7: str) -> Ack:
    segments = [s for s in er7.replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise Hl7Error("acknowledgement is not an HL7 message")
    field_sep = segments[0][3]
    component_sep = segments[0][4]
    msa = next((s.split(field_sep) for s in segments if s.startswith("MSA")), None)
    if msa is None or len(msa) < 3:
        raise Hl7Error("acknowledgement has no MSA segment")
    texts = [unescape(msa[3])] if len(msa) > 3 and msa[3] else []
    for seg in (s.split(field_sep) for s in segments if s.startswith("ERR")):
        if len(seg) > 8 and seg[8]:
            texts.append(unescape(seg[8]))
        elif len(seg) > 3 and seg[3]:
            texts.append(unescape(seg[3].replace(component_sep, " ")))
    return Ack(msa[1], msa[2], "; ".join(texts))
