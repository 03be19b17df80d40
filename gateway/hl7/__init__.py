"""HL7 v2: building ORU^R01 and reading ACKs (pure, over hl7apy), and the MLLP client edge."""
