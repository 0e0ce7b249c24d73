"""Preference losses against formulas written out by hand, on a tiny model.

Each test builds the trainer our config builds (`build_preference_args` + `build_preference_trainer`),
makes the policy differ from the reference (random LoRA B matrices, or noise on a full model), takes
one collated batch, and compares `trainer.compute_loss` with the loss computed here from per-sequence
log-probs of a plain forward pass: the policy's, and the reference's (the model with its adapter
switched off, or the frozen copy of a full fine-tune). Tolerance: 1e-5 relative (float32 on CPU;
the trainer's fused LM head sums in a different order).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml

from axolotl.testing import dpo_rows, kto_rows
from axolotl.testing.configs import load

LORA = "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\n"
DATASET_TYPE = {"dpo": "chatml.intel", "ipo": "chatml.intel", "kto": "chatml.intel", "orpo": "chat_template.argilla",
                "simpo": "chatml.intel"}


def make_cfg(model_dir: Path, tmp: Path, rl: str, extra: str = "") -> Any:
    keys: dict[str, Any] = {
        "base_model": str(model_dir), "learning_rate": 1e-3, "rl": rl, "output_dir": str(tmp / "out"),
        "datasets": [{"path": "prefs.jsonl", "type": DATASET_TYPE[rl]}], "sequence_len": 128,
        "optimizer": "adamw_torch", "save_strategy": "no", "dataset_num_proc": 1, "micro_batch_size": 4,
    }
    keys.update(yaml.safe_load(extra) or {})
    return load(yaml.safe_dump(keys)).cfg


def make_trainer(cfg: Any, rows: list[dict[str, Any]]) -> Any:
    import datasets

    from axolotl.models.adapters import apply_adapter
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.training.preference import build_preference_trainer
    from axolotl.training.preference_args import build_preference_args

    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg)
    model = apply_adapter(cfg, load_model(cfg, tokenizer))
    args = build_preference_args(cfg, has_eval=False)
    return build_preference_trainer(cfg, model, tokenizer, datasets.Dataset.from_list(rows), None, args)


def move_policy_away(trainer: Any) -> None:
    """LoRA starts as the identity (B = 0) and a full copy equals its reference: perturb the policy."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if param.requires_grad and ("lora_B" in name or "lora" not in name):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def first_batch(trainer: Any) -> dict[str, torch.Tensor]:
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def token_logps(model: Any, ids: torch.Tensor, mask: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """log p(token_t | tokens_<t) for t >= 1 where `scored[t]`, else 0; shape (rows, len - 1)."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return logps * scored[:, 1:]


def reference_of(trainer: Any) -> Any:
    """A callable running the reference: the frozen copy, or the model with its adapter off."""
    if trainer.ref_model is not None:
        return lambda **kw: trainer.ref_model(**kw)

    def base(**kw: Any) -> Any:
        with trainer.model.disable_adapter():
            return trainer.model(**kw)
    return base


# --------------------------------------------------------------------------------------------
# DPO
# --------------------------------------------------------------------------------------------

def dpo_terms(trainer: Any, batch: dict[str, torch.Tensor], ld_alpha: float | None = None) -> dict[str, Any]:
    """Per-pair summed completion log-probs of policy and reference, completion lengths, chosen tokens."""
    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    policy = token_logps(trainer.model, ids, mask, completion)
    reference = token_logps(reference_of(trainer), ids, mask, completion)
    lengths = completion.sum(dim=1).float()
    if ld_alpha is not None:  # LD-DPO: tokens past the shorter response of the pair weigh ld_alpha
        position = completion[:, 1:].cumsum(dim=1)
        shared = torch.minimum(*lengths.chunk(2)).repeat(2)[:, None]
        weight = torch.where(position <= shared, 1.0, ld_alpha) * completion[:, 1:]
        policy, reference = policy * weight, reference * weight
    pc, pr = policy.sum(dim=1).chunk(2)
    rc, rr = reference.sum(dim=1).chunk(2)
    chosen_tokens = policy.chunk(2)[0][completion[:, 1:].chunk(2)[0].bool()]
    return {"pc": pc, "pr": pr, "rc": rc, "rr": rr, "nc": lengths.chunk(2)[0], "nr": lengths.chunk(2)[1],
            "chosen_tokens": chosen_tokens, "policy_tokens": policy, "logits_of": (ids, mask, completion)}


def hand_dpo(loss: str, t: dict[str, Any], beta: float, eps: float = 0.0, tau: float = 0.05) -> torch.Tensor:
    """One DPO-family loss, averaged over the pairs, from the formulas of the papers."""
    c, r = t["pc"] - t["rc"], t["pr"] - t["rr"]  # chosen / rejected log-ratios
    delta = c - r
    logsig = F.logsigmoid
    if loss == "sigmoid":
        per_pair = -logsig(beta * delta)
    elif loss == "hinge":
        per_pair = torch.relu(1 - beta * delta)
    elif loss == "ipo":  # length-normalised log-ratios, target margin 1 / (2 tau) with tau = beta
        per_pair = (c / t["nc"] - r / t["nr"] - 1 / (2 * beta)) ** 2
    elif loss == "exo_pair":  # KL(p_theta || (1 - eps, eps)) over {chosen, rejected}
        p = torch.sigmoid(beta * delta)
        per_pair = p * (logsig(beta * delta) - math.log(1 - eps)) + (1 - p) * (logsig(-beta * delta) - math.log(eps))
    elif loss == "nca_pair":
        per_pair = -logsig(beta * c) - 0.5 * logsig(-beta * c) - 0.5 * logsig(-beta * r)
    elif loss == "robust":
        per_pair = (-(1 - eps) * logsig(beta * delta) + eps * logsig(-beta * delta)) / (1 - 2 * eps)
    elif loss == "bco_pair":
        per_pair = -logsig(beta * c) - logsig(-beta * r)
    elif loss == "sppo_hard":
        per_pair = (c - 1 / (2 * beta)) ** 2 + (r + 1 / (2 * beta)) ** 2
    elif loss in ("aot", "aot_pair"):  # sorted (optimal-transport) pairing across the batch
        if loss == "aot":
            delta = torch.sort(t["pc"] - t["pr"]).values - torch.sort(t["rc"] - t["rr"]).values
        else:
            delta = torch.sort(c).values - torch.sort(r).values
        per_pair = -logsig(beta * delta) * (1 - eps) - logsig(-beta * delta) * eps
    elif loss == "apo_zero":
        per_pair = (1 - torch.sigmoid(beta * c)) + torch.sigmoid(beta * r)
    elif loss == "apo_down":
        per_pair = torch.sigmoid(beta * c) + (1 - torch.sigmoid(beta * delta))
    elif loss == "discopop":
        z = beta * delta
        mix = torch.sigmoid(z / tau)
        per_pair = -logsig(z) * (1 - mix) + torch.exp(-z) * mix
    elif loss == "sft":  # mean NLL over every chosen completion token of the batch
        return -t["chosen_tokens"].mean()
    elif loss == "sigmoid_norm":
        per_pair = -logsig(beta * (c / t["nc"] - r / t["nr"]))
    else:
        raise AssertionError(loss)
    return per_pair.mean()


DPO_LOSSES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_pair", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]


@pytest.fixture(scope="module")
def dpo_lora(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, dict[str, Any]]:
    """One LoRA DPO trainer, its first batch and the hand-computed log-probs, shared by the loss cases
    (the config -> DPOConfig mapping of each loss is pinned in test_preference_args.py)."""
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path_factory.mktemp("dpo"), "dpo", LORA), dpo_rows(8))
    move_policy_away(trainer)
    batch = first_batch(trainer)
    return trainer, batch, dpo_terms(trainer, batch)


@pytest.mark.parametrize("loss", DPO_LOSSES)
def test_each_dpo_loss_matches_its_formula(loss: str, dpo_lora: tuple[Any, Any, dict[str, Any]]) -> None:
    from axolotl.config.rules import DPO_LOSS_TYPES
    from axolotl.training.preference_args import TRL_LOSS_NAMES

    assert set(DPO_LOSSES) == DPO_LOSS_TYPES, "every loss the config accepts is tested"
    trainer, batch, terms = dpo_lora
    eps = {"exo_pair": 1e-3, "robust": 0.1, "aot": 0.1, "aot_pair": 0.1}.get(loss, 0.0)
    trainer.loss_types, trainer.loss_weights = [TRL_LOSS_NAMES.get(loss, loss)], [1.0]
    trainer.beta, trainer.label_smoothing = 0.3, eps
    expected = hand_dpo(loss, terms, beta=0.3, eps=eps)
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_weighted_dpo_losses_are_summed_with_their_weights(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """MPO-style mix: 0.8 sigmoid + 0.2 bco_pair + 1.0 sft."""
    extra = LORA + "dpo_loss_type: [sigmoid, bco_pair, sft]\ndpo_loss_weights: [0.8, 0.2, 1.0]\n"
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo", extra), dpo_rows(8))
    move_policy_away(trainer)
    batch = first_batch(trainer)
    terms = dpo_terms(trainer, batch)
    beta = 0.1  # TRL's default when rl_beta is unset
    expected = 0.8 * hand_dpo("sigmoid", terms, beta) + 0.2 * hand_dpo("bco_pair", terms, beta) \
        + 1.0 * hand_dpo("sft", terms, beta)
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(("extra", "expected_of"), [
    pytest.param("rpo_alpha: 0.5\n", lambda t: hand_dpo("sigmoid", t, 0.2) + 0.5 * hand_dpo("sft", t, 0.2), id="rpo"),
    pytest.param("dpo_norm_loss: true\n", lambda t: hand_dpo("sigmoid_norm", t, 0.2), id="norm"),
    pytest.param("dpo_loss_type: [ipo]\ndpo_norm_loss: true\n", lambda t: hand_dpo("ipo", t, 0.2),
                 id="norm-ipo-unchanged"),
    pytest.param("dpo_loss_type: [ipo, sft]\ndpo_loss_weights: [1.0, 0.3]\n",
                 lambda t: hand_dpo("ipo", t, 0.2) + 0.3 * hand_dpo("sft", t, 0.2), id="ipo-plus-nll"),
])
def test_dpo_variants(extra: str, expected_of: Any, tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo", LORA + "rl_beta: 0.2\n" + extra), dpo_rows(8))
    move_policy_away(trainer)
    batch = first_batch(trainer)
    expected = expected_of(dpo_terms(trainer, batch))
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_rl_ipo_trains_the_ipo_loss(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The older spelling `rl: ipo` is DPO with the IPO loss (its deprecation warning: tests/config)."""
    cfg = make_cfg(tiny_llama_dir, tmp_path, "ipo", LORA + "rl_beta: 0.2\n")
    assert (cfg.rl, cfg.dpo_loss_type) == ("dpo", ["ipo"])
    trainer = make_trainer(cfg, dpo_rows(8))
    assert trainer.loss_types == ["ipo"]
    move_policy_away(trainer)
    batch = first_batch(trainer)
    expected = hand_dpo("ipo", dpo_terms(trainer, batch), 0.2)
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_wpo_weighting(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`dpo_use_weighting`: each pair's loss times w(chosen) w(rejected), w = exp(mean over the completion of
    log p(token) - log sum_v p(v)^2) (WPO, Eq. 2), computed without gradient."""
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo", LORA + "dpo_use_weighting: true\n"),
                           dpo_rows(8))
    move_policy_away(trainer)
    batch = first_batch(trainer)
    terms = dpo_terms(trainer, batch)
    ids, mask, completion = terms["logits_of"]
    with torch.no_grad():
        logits = trainer.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    log_sum_sq = torch.logsumexp(2 * torch.log_softmax(logits, dim=-1), dim=-1)
    scored = completion[:, 1:]
    weights = torch.exp(((terms["policy_tokens"] - log_sum_sq) * scored).sum(dim=1) / scored.sum(dim=1))
    chosen_w, rejected_w = weights.chunk(2)
    delta = (terms["pc"] - terms["rc"]) - (terms["pr"] - terms["rr"])
    expected = (-F.logsigmoid(0.1 * delta) * chosen_w * rejected_w).mean()
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_ld_alpha_down_weights_the_longer_tail(tiny_llama_dir: Path, tmp_path: Path) -> None:
    rows = [{**row, "chosen": row["chosen"] + " Indeed, that is the sum." * (i % 3)}
            for i, row in enumerate(dpo_rows(8))]
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo", LORA + "dpo_ld_alpha: 0.25\n"), rows)
    move_policy_away(trainer)
    batch = first_batch(trainer)
    expected = hand_dpo("sigmoid", dpo_terms(trainer, batch, ld_alpha=0.25), 0.1)
    plain = hand_dpo("sigmoid", dpo_terms(trainer, batch), 0.1)
    loss = trainer.compute_loss(trainer.model, batch).item()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert loss != pytest.approx(plain.item(), rel=1e-3), "the batch must contain unequal lengths"


# --------------------------------------------------------------------------------------------
# the reference model
# --------------------------------------------------------------------------------------------

def test_lora_reference_is_the_base_with_the_adapter_off(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """No second model and no copy of the adapter: the reference log-probs are those of the frozen base."""
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo", LORA), dpo_rows(8))
    assert trainer.ref_model is None
    assert list(trainer.model.peft_config) == ["default"], "TRL's 'ref' copy of the adapter is removed"
    move_policy_away(trainer)
    batch = first_batch(trainer)
    ids, mask, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    with trainer.model.disable_adapter():
        base = token_logps(trainer.model, ids, mask, completion).sum(dim=1)
    policy = token_logps(trainer.model, ids, mask, completion).sum(dim=1)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    torch.testing.assert_close(torch.cat([ref_chosen, ref_rejected]), base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(base, policy, atol=1e-3), "the adapter changes the policy, so the check means something"
    from transformers import AutoModelForCausalLM

    pristine = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    torch.testing.assert_close(token_logps(pristine, ids, mask, completion).sum(dim=1), base, rtol=1e-5, atol=1e-5)


def test_kto_lora_reference_is_the_base(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "kto", LORA), kto_rows(8))
    assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]


def test_full_finetune_reference_is_a_frozen_copy(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo"), dpo_rows(8))
    reference = trainer.ref_model
    assert reference is not None and reference is not trainer.model
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training
    policy = dict(trainer.model.named_parameters())
    assert all(torch.equal(p, policy[n]) for n, p in reference.named_parameters())
    move_policy_away(trainer)
    batch = first_batch(trainer)
    expected = hand_dpo("sigmoid", dpo_terms(trainer, batch), 0.1)
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_precomputed_reference_keeps_no_copy(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "dpo", "precompute_ref_log_probs: true\n"),
                           dpo_rows(8))
    assert trainer.ref_model is None
    assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(trainer.train_dataset.column_names)


# --------------------------------------------------------------------------------------------
# KTO
# --------------------------------------------------------------------------------------------

def test_kto_loss_matches_its_formula(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """KTO: z = max(0, mean KL log-ratio of mismatched pairs); desirable rows lose w_d (1 - sigma(beta (r - z))),
    undesirable rows w_u (1 - sigma(beta (z - r))), r the row's log-ratio; averaged over all rows."""
    extra = LORA + "rl_beta: 0.4\nkto_desirable_weight: 1.5\nkto_undesirable_weight: 0.7\n"
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "kto", extra), kto_rows(8))
    move_policy_away(trainer)
    batch = first_batch(trainer)

    def ratios(prefix: str) -> torch.Tensor:
        ids, mask = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
        completion = batch[f"{prefix}completion_mask"]
        return (token_logps(trainer.model, ids, mask, completion).sum(dim=1)
                - token_logps(reference_of(trainer), ids, mask, completion).sum(dim=1))

    ratio, kl = ratios(""), ratios("KL_").mean().clamp(min=0)
    desirable = batch["label"].bool()
    assert desirable.any() and (~desirable).any()
    losses = torch.cat([1.5 * (1 - torch.sigmoid(0.4 * (ratio[desirable] - kl))),
                        0.7 * (1 - torch.sigmoid(0.4 * (kl - ratio[~desirable])))])
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(losses.mean().item(), rel=1e-5)
    assert trainer._metrics["train"]["kl"][-1] == pytest.approx(kl.item(), rel=1e-4, abs=1e-6)


# --------------------------------------------------------------------------------------------
# ORPO and SimPO (reference-free, TRL's CPO/ORPO trainers)
# --------------------------------------------------------------------------------------------

def pair_logits(trainer: Any, batch: dict[str, torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted log-softmax of one side (`chosen` / `rejected`) and its shifted labels."""
    ids, mask = batch[f"{side}_input_ids"], batch[f"{side}_attention_mask"]
    logits = trainer.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1), batch[f"{side}_labels"][:, 1:]


def mean_response_logp(logps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    scored = labels != -100
    per_token = logps.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (per_token * scored).sum(dim=1) / scored.sum(dim=1)


def test_orpo_loss_matches_its_formula(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """ORPO: NLL of the chosen rows (TRL scores prompt and response) minus orpo_alpha x mean log sigma(log odds
    ratio), odds from the length-averaged response log-probs: log odds(p) = log p - log(1 - p)."""
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "orpo", LORA + "orpo_alpha: 0.25\n"), dpo_rows(8))
    assert trainer.beta == 0.25
    move_policy_away(trainer)
    batch = first_batch(trainer)
    with torch.no_grad():
        chosen_logps, chosen_labels = pair_logits(trainer, batch, "chosen")
        rejected_logps, rejected_labels = pair_logits(trainer, batch, "rejected")
    c, r = mean_response_logp(chosen_logps, chosen_labels), mean_response_logp(rejected_logps, rejected_labels)
    log_odds = (c - r) - (torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r)))
    ids, mask = batch["chosen_input_ids"], batch["chosen_attention_mask"]
    nll = F.nll_loss(chosen_logps.flatten(0, 1), ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100).flatten())
    expected = nll - (0.25 * F.logsigmoid(log_odds)).mean()
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)
    # and TRL's own odds-ratio function agrees on the same log-probs
    losses, *_ = trainer.odds_ratio_loss(c, r)
    assert (nll - losses.mean()).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("cpo_alpha", [0.0, 0.5])
def test_simpo_loss_matches_its_formula(cpo_alpha: float, tiny_llama_dir: Path, tmp_path: Path) -> None:
    """SimPO: -log sigma(beta (mean logp chosen - mean logp rejected) - gamma), plus cpo_alpha x the NLL of
    the chosen responses (CPO's behaviour-cloning term; 0 = pure SimPO)."""
    extra = LORA + f"rl_beta: 2.0\nsimpo_gamma: 0.8\ncpo_alpha: {cpo_alpha}\n"
    trainer = make_trainer(make_cfg(tiny_llama_dir, tmp_path, "simpo", extra), dpo_rows(8))
    assert (trainer.loss_type, trainer.beta, trainer.simpo_gamma, trainer.cpo_alpha) == ("simpo", 2.0, 0.8, cpo_alpha)
    move_policy_away(trainer)
    batch = first_batch(trainer)
    with torch.no_grad():
        chosen_logps, chosen_labels = pair_logits(trainer, batch, "chosen")
        rejected_logps, rejected_labels = pair_logits(trainer, batch, "rejected")
    c, r = mean_response_logp(chosen_logps, chosen_labels), mean_response_logp(rejected_logps, rejected_labels)
    nll = F.nll_loss(chosen_logps.flatten(0, 1), chosen_labels.flatten(), ignore_index=-100)
    expected = -F.logsigmoid(2.0 * (c - r) - 0.8).mean() + cpo_alpha * nll
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), rel=1e-5)
    losses, _, _ = trainer.cpo_loss(c, r)
    assert (losses.mean() + cpo_alpha * nll).item() == pytest.approx(expected.item(), rel=1e-6)
