"""Model licences as policy: what each known licence allows, and whether a deployment may
use a model under it.

Much of "open source" AI is open weights under terms with conditions. Ownlight knows
the terms that decide whether a model may serve: commercial use, redistribution of
the weights, use restrictions (an acceptable-use policy that must be passed on), and
attribution. The operator declares what the deployment is (``lifecycle.deployment_use``):

- ``internal``: research, evaluation or personal use inside the organisation;
- ``commercial``: the model serves a business or its product;
- ``redistribution``: the weights themselves are given to others (shipped in a product).

A model whose licence does not allow that use, or whose licence is unknown, cannot be
promoted. This table summarises; it is not legal advice, and the licence text decides.
"""

from __future__ import annotations

from dataclasses import dataclass

USES = ("internal", "commercial", "redistribution")


@dataclass(frozen=True)
class License:
    id: str
    name: str
    commercial: bool
    redistribution: bool
    restrictions: str = ""  # use-restriction clauses that bind every user
    attribution: str = ""  # what must accompany the model or the product
    internal: bool = True

    def allows(self, use: str) -> bool:
        if use == "internal":
            return self.internal
        if use == "commercial":
            return self.commercial
        return self.commercial and self.redistribution if use == "redistribution" else False

    def obligations(self) -> str:
        return "; ".join(p for p in (self.restrictions, self.attribution) if p) or "-"


_LLAMA_AUP = ("Llama acceptable use policy; over 700M monthly users needs a licence from Meta")
_LLAMA_ATTR = ("include the licence; show \"Built with Llama\"; derived model names start "
               "with \"Llama\"")

KNOWN: dict[str, License] = {lic.id: lic for lic in (
    License("apache-2.0", "Apache License 2.0", True, True,
            attribution="keep the licence and NOTICE file"),
    License("mit", "MIT License", True, True, attribution="keep the copyright notice"),
    License("bsd-3-clause", "BSD 3-Clause", True, True,
            attribution="keep the copyright notice"),
    License("cc-by-4.0", "Creative Commons Attribution 4.0", True, True,
            attribution="credit the authors"),
    License("cc-by-nc-4.0", "Creative Commons Attribution-NonCommercial 4.0", False, False,
            attribution="credit the authors"),
    License("openrail-m", "Open RAIL-M", True, True,
            restrictions="use restrictions of the licence's attachment A, passed on",
            attribution="include the licence"),
    License("gemma", "Gemma Terms of Use", True, True,
            restrictions="Gemma prohibited use policy, passed on to every user",
            attribution="give recipients the terms; mark modified files"),
    License("llama2", "Llama 2 Community License", True, True, _LLAMA_AUP, _LLAMA_ATTR),
    License("llama3", "Meta Llama 3 Community License", True, True, _LLAMA_AUP, _LLAMA_ATTR),
    License("llama3.1", "Llama 3.1 Community License", True, True, _LLAMA_AUP, _LLAMA_ATTR),
    License("llama3.2", "Llama 3.2 Community License", True, True,
            _LLAMA_AUP + "; multimodal models not licensed in the EU", _LLAMA_ATTR),
    License("llama3.3", "Llama 3.3 Community License", True, True, _LLAMA_AUP, _LLAMA_ATTR),
    License("qwen", "Qwen License Agreement", True, True,
            restrictions="over 100M monthly users needs a licence from Alibaba Cloud",
            attribution="include the licence; show \"Built with Qwen\""),
    License("qwen-research", "Qwen Research License", False, False,
            restrictions="non-commercial research only",
            attribution="include the licence; show \"Built with Qwen\""),
    License("mistral-research", "Mistral AI Research License", False, False,
            restrictions="research and personal use only"),
    License("deepseek", "DeepSeek License", True, True,
            restrictions="use restrictions of the licence's attachment A, passed on",
            attribution="include the licence"),
)}

# Spellings found in GGUF metadata and model cards.
ALIASES = {
    "apache 2.0": "apache-2.0", "apache2": "apache-2.0", "apache-2": "apache-2.0",
    "llama-3.1": "llama3.1", "llama3_1": "llama3.1", "llama-3.2": "llama3.2",
    "llama3_2": "llama3.2", "llama-3.3": "llama3.3", "llama-3": "llama3",
    "llama-2": "llama2", "tongyi-qianwen": "qwen", "qwen-license": "qwen",
    "mrl": "mistral-research", "cc-by-nc": "cc-by-nc-4.0",
}


def normalise(raw: str | None) -> str | None:
    """A licence id as the table spells it (``Apache 2.0`` -> ``apache-2.0``)."""
    if not raw or not raw.strip():
        return None
    key = raw.strip().lower()
    return ALIASES.get(key, key)


def lookup(license_id: str | None) -> License | None:
    return KNOWN.get(normalise(license_id) or "")


def refusal(license_id: str | None, use: str) -> str | None:
    """Why a model under ``license_id`` may not serve a ``use`` deployment (None: it may)."""
    lic = lookup(license_id)
    if lic is None:
        known = ", ".join(KNOWN)
        return (f"licence {license_id or 'unknown'!r} is not one Ownlight knows, so its terms "
                f"cannot be checked; re-import with --license ID (known: {known})")
    if lic.allows(use):
        return None
    return (f"the {lic.name} ({lic.id}) does not allow {use} use "
            f"(lifecycle.deployment_use = {use!r})")
