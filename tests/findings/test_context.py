"""Conditioning on the clinical context: the prefix, its place in training and decoding, and its sources."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from gateway.findings.checkpoint import load_checkpoint
from gateway.findings.context import (
    ClinicalContext,
    age_at,
    encode_prefixes,
    header_indication,
    prefix_words,
    report_indication,
    study_context,
)
from gateway.findings.data import load_studies
from gateway.findings.decoding import beam_search, greedy, prime
from gateway.findings.models import PRESETS, CaptionModel, ModelConfig, build_model
from gateway.findings.service import Drafter, StudyImage
from gateway.findings.settings import FindingsSettings
from gateway.findings.synthetic import INDICATIONS, generate, write_dataset, write_dicom
from gateway.findings.text import TextRules, Vocabulary
from gateway.findings.training import TrainOptions, batch_targets, decode, train

RULES = TextRules.for_protocol("r2gen")
ARCHITECTURES = ["cnn-lstm", "attention", "vit-gpt2"]
# report words, then words only the context prefix holds (ids 10..): read, never generated
VOCAB = Vocabulary(
    ["<pad>", "<start>", "<end>", "<unk>", ".", "a", "b", "c", "d", "e", "age:70s", "sex:f", "cough"]
)


def _model(architecture: str, seed: int = 0, tokens: int = 2) -> CaptionModel:
    torch.manual_seed(seed)
    config = ModelConfig(
        architecture=architecture,  # type: ignore[arg-type]
        vocab_size=len(VOCAB),
        max_tokens=12,
        context=True,
        context_tokens=tokens,
        generated_vocab_size=10,
        **{**PRESETS["tiny"], "image_size": 32},
    )
    return build_model(config).eval()


def _images(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 2, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_prefix_words() -> None:
    context = ClinicalContext(74, "F", "Shortness of breath, fever.")
    assert prefix_words(context, RULES, 8) == ["age:70s", "sex:f", "shortness", "of", "breath", "fever"]
    assert prefix_words(context, RULES, 2) == ["age:70s", "sex:f", "shortness", "of"]
    assert prefix_words(None, RULES, 8) == ["age:unknown", "sex:unknown"]
    # ninety and over pooled, as a de-identified export pools them: both exports give the same prefix
    assert prefix_words(ClinicalContext(97, "m"), RULES, 0) == prefix_words(
        ClinicalContext(90, "M"), RULES, 0
    )
    assert prefix_words(ClinicalContext(5, "X"), RULES, 0) == ["age:0s", "sex:unknown"]


def test_from_mapping_tolerates_bad_values() -> None:
    assert ClinicalContext.from_mapping({"age": "70", "sex": 1, "indication": "  "}) == ClinicalContext()
    assert ClinicalContext.from_mapping({"age": 70, "sex": "female", "indication": "Cough."}) == (
        ClinicalContext(70, "F", "Cough.")
    )
    assert ClinicalContext.from_mapping(None) == ClinicalContext()


def test_encode_prefixes_fixed_width() -> None:
    ids = encode_prefixes([ClinicalContext(71, "F", "cough"), None], VOCAB, RULES, 3)
    assert ids.tolist() == [[10, 11, 12, 0, 0], [3, 3, 0, 0, 0]]  # unknown words are <unk>, the rest <pad>


def test_prefix_is_input_only_in_teacher_forcing() -> None:
    prefix = torch.tensor([[10, 11, 12, 0]])
    inputs, targets = batch_targets(["a b ."], VOCAB, 12, prefix)
    assert inputs.tolist() == [[10, 11, 12, 0, 1, 5, 6, 4]]
    assert targets.tolist() == [[0, 0, 0, 0, 5, 6, 4, 2]]  # <pad> under the prefix: ignored by the loss


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_decoding_reads_the_prefix_as_training_does(architecture: str) -> None:
    """The log-probabilities after ``prefix <start> a`` are the same teacher-forced and step by step."""
    model = _model(architecture)
    images = _images()
    prefix = torch.tensor([[10, 11, 12, 0], [3, 3, 0, 0]])
    words = torch.tensor([[VOCAB.start, 5, 6], [VOCAB.start, 7, 4]])
    with torch.no_grad():
        forced = torch.log_softmax(model(images, torch.cat([prefix, words], dim=1)).float(), dim=-1)
        memory = model.encode(images)
        state = prime(model, memory, model.start(memory), prefix)
        for column in range(words.shape[1]):
            stepped, state = model.step(words[:, column], memory, state)
            torch.testing.assert_close(stepped, forced[:, prefix.shape[1] + column], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_prefix_changes_the_draft_but_never_appears_in_it(architecture: str) -> None:
    model = _model(architecture, seed=3)
    # make the context-only words the most likely output everywhere: they must still never be generated
    head = model.model.decoder.lm_head if architecture == "vit-gpt2" else model.head
    with torch.no_grad():
        head.weight[10:] += 5.0 * head.weight[10:].sign()
        if head.bias is not None:
            head.bias[10:] = 50.0
    images = _images(1).repeat(2, 1, 1, 1, 1)  # the same images, two contexts
    prefix = torch.tensor([[10, 11, 12, 0], [3, 3, 0, 0]])
    for ids in (greedy(model, images, 12, prefix), beam_search(model, images, 12, 3, 1.0, prefix)):
        assert all(token < 10 for seq in ids for token in seq)
    with torch.no_grad():
        memory = model.encode(images)
        state = prime(model, memory, model.start(memory), prefix)
        logp, _ = model.step(torch.full((2,), VOCAB.start), memory, state)
    assert not torch.allclose(logp[0], logp[1])  # the model reads its context


def test_decode_refuses_a_context_model_without_prefix() -> None:
    model = _model("cnn-lstm")
    images = (torch.rand(2, 2, 32, 32) * 255).to(torch.uint8)
    with pytest.raises(ValueError, match="context prefix"):
        decode(model, images, VOCAB)
    prefix = encode_prefixes([None, ClinicalContext(70, "F", "cough")], VOCAB, RULES, 2)
    assert len(decode(model, images, VOCAB, prefix=prefix)) == 2


def test_synthetic_context_carries_signal_and_leaves_the_pixels() -> None:
    studies = generate(400, seed=0)
    agree = Counter(
        (INDICATIONS[("pleural effusion" in s.findings, "enlarged" in s.findings)] == s.context["indication"])
        for s in studies
        if s.context
    )
    assert 0.75 < agree[True] / 400 < 0.92  # four in five follow the findings, the rest at random
    again = generate(3, seed=0)
    assert [s.findings for s in again] == [s.findings for s in studies[:3]]
    assert all((a.frontal == b.frontal).all() for a, b in zip(again, studies, strict=False))


def test_context_sources(tmp_path: Path) -> None:
    assert age_at("19500615", "20240614") == 73 and age_at("19500615", "20240615") == 74
    assert age_at(None, "20240101") is None and age_at("2024", "20240101") is None
    document = {
        "paragraphs": [
            {"section": "indication", "heading": True, "text": "INDICATION:"},
            {"section": "indication", "text": "Cough."},
            {"section": "findings", "text": "Clear."},
        ]
    }
    assert report_indication(document) == "Cough." and report_indication(None) is None
    study = generate(1)[0]
    plain = tmp_path / "plain.dcm"
    ordered = tmp_path / "ordered.dcm"
    write_dicom(plain, study.frontal, view_position="PA", study_uid="1.2.3", patient_id="P")
    write_dicom(
        ordered,
        study.lateral,
        view_position="LL",
        study_uid="1.2.3",
        patient_id="P",
        extra={"ReasonForTheRequestedProcedure": "Fever."},
    )
    assert header_indication([plain]) is None and header_indication([plain, ordered]) == "Fever."
    # the order's reason, as the modality received it, wins over the report's section
    both = study_context(
        birth_date="19500615", sex="f", study_date="20240615", image_paths=[plain, ordered], report=document
    )
    assert both == ClinicalContext(74, "F", "Fever.")
    assert study_context(
        birth_date=None, sex=None, study_date=None, image_paths=[plain], report=document
    ) == ClinicalContext(None, None, "Cough.")


def test_train_with_context_keeps_the_flag_and_drafts(tmp_path: Path) -> None:
    """Trained with ``context`` (kept in the checkpoint), the drafter builds each study's prefix."""
    studies = generate(40, seed=2, size=32)
    data = write_dataset(studies, tmp_path / "data", "archive")
    records = load_studies(data, "archive")
    assert all(r.context and r.context["indication"] for r in records)
    options = TrainOptions(
        architecture="cnn-lstm",
        preset="tiny",
        epochs=1,
        batch_size=8,
        device="cpu",
        progress=False,
        context=True,
        context_tokens=4,
        image_size=32,
    )
    train(records, tmp_path / "run", options)
    checkpoint = load_checkpoint(tmp_path / "run")
    config = checkpoint.model.config
    assert config.context and config.prefix_length == 6
    assert config.generated_vocab_size is not None and config.generated_vocab_size < len(checkpoint.vocab)
    assert {"age:60s", "sex:f", "sex:m"} <= set(checkpoint.vocab.tokens[config.generated_vocab_size :])
    drafter = Drafter(checkpoint, FindingsSettings(beam_size=2), torch.device("cpu"))
    assert drafter.uses_context
    folder = tmp_path / "study"
    images = [
        StudyImage(
            write_dicom(folder / f"{v}.dcm", p, view_position=v, study_uid="1.2", patient_id="P"),
            folder / f"{v}.dcm",
            v,
        )
        for p, v in ((studies[0].frontal, "PA"), (studies[0].lateral, "LL"))
    ]
    contexts = [ClinicalContext(80, "F", "Shortness of breath."), None]
    drafts = drafter.draft_studies([images, images], contexts)
    prefix_only = set(checkpoint.vocab.tokens[config.generated_vocab_size :])
    for draft in drafts:
        assert draft.sentences and draft.model_version == checkpoint.model_version
        assert not {w for s in draft.sentences for w in s.text.split()} & prefix_only
    with pytest.raises(ValueError, match="contexts for"):
        drafter.draft_studies([images], contexts)
