"""Build a tiny COMET checkpoint offline (run with the COMET environment's python).

    envs/comet-venv/bin/python -I tests/evaluation/make_tiny_comet.py OUT_DIR

A 2-layer, 32-wide XLM-R encoder with a word-level tokenizer trained here is saved as a
transformers folder; a COMET RegressionMetric is built on it and saved in COMET's layout
(OUT_DIR/hparams.yaml beside OUT_DIR/checkpoints/model.ckpt), so `load_from_checkpoint` and
`predict` run for real. Its scores mean nothing; the code path is what is tested.
"""

import sys
from pathlib import Path

import pytorch_lightning as ptl
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

out = Path(sys.argv[1])
encoder_dir = out / "encoder"
encoder_dir.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
corpus = ["the cat sat on the mat .", "a dog runs in the park .", "translate this sentence please ."]
tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=specials))
tok.post_processor = processors.TemplateProcessing(
    single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
    special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                               pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")
fast.save_pretrained(encoder_dir)
config = XLMRobertaConfig(vocab_size=fast.vocab_size + 8, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=130,
                          pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                          eos_token_id=fast.eos_token_id)
XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(encoder_dir)

from comet.models import RegressionMetric  # noqa: E402

model = RegressionMetric(pretrained_model=str(encoder_dir), encoder_model="XLM-RoBERTa",
                         hidden_sizes=[16], layer="mix", layer_norm=False, pool="avg",
                         load_pretrained_weights=True)
(out / "checkpoints").mkdir(exist_ok=True)
hparams = {**dict(model.hparams), "class_identifier": "regression_metric"}
(out / "hparams.yaml").write_text(yaml.safe_dump(hparams))
torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": ptl.__version__}, out / "checkpoints" / "model.ckpt")
print(out / "checkpoints" / "model.ckpt")
