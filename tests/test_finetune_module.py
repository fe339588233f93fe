"""MixedTokenLM under the Lightning Trainer: losses and logging, exact resume, self-contained checkpoints."""

from __future__ import annotations

import shutil

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lm_latent.data.tokenization import prompt_text
from lm_latent.finetune.module import MixedTokenLM, lr_factor
from test_finetune_data import K, TINY_LLAMA, datamodule, synthetic_example, write_stage2_inputs


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_tokenizer):
    return write_stage2_inputs(tmp_path_factory.mktemp("module_data"), tiny_tokenizer, n_train=48, n_val=16)


class BatchRecorder(Callback):
    def __init__(self):
        self.batches, self.losses = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((trainer.current_epoch, tuple(batch["ids"]), tuple(batch["k"].tolist())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


class StopAt(Callback):
    """Interrupts a run after ``step`` optimizer steps (same max_steps, so the same lr schedule)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _module(files, **kwargs):
    pl.seed_everything(0)
    return MixedTokenLM(TINY_LLAMA, tokenizer_dir=files["tokenizer_dir"], num_codes=K, lr=2e-3, warmup_steps=2, **kwargs)


def _trainer(root, max_steps, callbacks=(), **kwargs):
    return pl.Trainer(
        accelerator="cpu", devices=1, max_steps=max_steps, default_root_dir=root, logger=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=list(callbacks),
        **kwargs,
    )


def test_training_logs_and_derives_accumulation(files, tmp_path):
    module = _module(files)
    dm = datamodule(files, global_batch_size=8, micro_batch_size=4)
    rec = BatchRecorder()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=12, default_root_dir=tmp_path, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[rec])
    trainer.fit(module, dm)
    assert trainer.accumulate_grad_batches == 2 and trainer.global_step == 12
    assert len(rec.batches) == 24 and all(len(ids) == 4 for _, ids, _ in rec.batches)
    logged = trainer.logged_metrics
    assert {"train/loss", "train/latent_share", "val/loss"} <= set(logged)
    assert 0 < float(logged["train/latent_share"]) < 1
    first, last = sum(rec.losses[:4]) / 4, sum(rec.losses[-4:]) / 4
    assert last < first - 0.5  # the tiny model learns the synthetic chains quickly


def test_latent_share_counts_supervised_latent_targets(files):
    module = _module(files)
    v = module.latent_vocab
    labels = torch.tensor([[-100, -100, v.bo_id, v.code_to_id(1), v.code_to_id(2), v.eo_id, 7, 8, 9]])
    # Targets are labels[1:]: 7 supervised tokens, 2 of them latent codes.
    assert float(module._latent_share(labels)) == pytest.approx(2 / 7)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mid_epoch_resume_replays_the_uninterrupted_run(files, tmp_path, num_workers):
    dm_args = dict(global_batch_size=8, micro_batch_size=4, num_workers=num_workers)
    full = BatchRecorder()
    straight = _module(files)
    _trainer(tmp_path / "a", 9, [full], enable_checkpointing=False).fit(straight, datamodule(files, **dm_args))

    part1, part2 = BatchRecorder(), BatchRecorder()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "b", save_last=True, every_n_train_steps=1)
    _trainer(tmp_path / "b", 9, [part1, StopAt(3), ckpt]).fit(_module(files), datamodule(files, **dm_args))
    assert len(part1.batches) == 6
    resumed = _module(files)
    _trainer(tmp_path / "b", 9, [part2]).fit(resumed, datamodule(files, **dm_args), ckpt_path=str(tmp_path / "b" / "last.ckpt"))

    # 12 micro batches per epoch; stopped after 6 of epoch 0, resumed there, crossed into epoch 1.
    assert part1.batches + part2.batches == full.batches
    for name, p in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], p, msg=name)


def test_checkpoint_is_self_contained(files, tmp_path):
    tok_copy = tmp_path / "tok"
    shutil.copytree(files["tokenizer_dir"], tok_copy)
    files = dict(files, tokenizer_dir=str(tok_copy))
    module = _module(files)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    _trainer(tmp_path, 2, [ckpt]).fit(module, datamodule(files, global_batch_size=8))
    shutil.rmtree(tok_copy)  # the original tokenizer is gone: the checkpoint carries its own

    loaded = MixedTokenLM.load_from_checkpoint(str(tmp_path / "ck" / "last.ckpt"), map_location="cpu")
    assert loaded.latent_vocab == module.latent_vocab
    assert loaded.tokenizer.get_vocab() == module.tokenizer.get_vocab()
    prompts = [prompt_text(synthetic_example(i, "val").question) for i in range(4)]
    ours = [g.token_ids for g in module.generate(prompts, max_new_tokens=10)]
    theirs = [g.token_ids for g in loaded.generate(prompts, max_new_tokens=10)]
    assert ours == theirs


def test_the_model_is_built_by_configure_model(files):
    """Construction allocates none of the LM's weights (what FSDP/DDP need: it is built under the strategy's
    init context); configure_model builds exactly what construction used to, whatever ran in between."""
    from lm_latent.data.tokenization import load_tokenizer
    from lm_latent.finetune.model import build_model
    from lm_latent.finetune.vocab import extend_vocabulary

    pl.seed_everything(0)
    reference = build_model(TINY_LLAMA, tok := load_tokenizer(files["tokenizer_dir"]))
    extend_vocabulary(reference, tok, K)

    module = _module(files)
    assert module.model is None and not list(module.parameters())
    assert len(module.tokenizer) == len(tok) and module.latent_vocab.num_codes == K  # the data's check needs these
    with pytest.raises(RuntimeError, match="configure_model"):
        module.generate(["Is Tom a wumpus?"])
    torch.randn(1000)  # the RNG moves on between construction and the Trainer's configure_model
    module.configure_model()
    model = module.model
    module.configure_model()  # Lightning calls it at every fit/validate/test: it builds once
    assert module.model is model
    assert model.state_dict().keys() == reference.state_dict().keys()
    for name, p in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), name


def test_meta_device_build(files):
    """Under ``torch.device("meta")`` (an empty-init strategy, or the CLI's shape check) nothing is
    allocated, also for the random row initialisation that reads values."""
    module = _module(files, new_token_init="random", gradient_checkpointing=True)
    with torch.device("meta"):
        module.configure_model()
    assert {p.device.type for p in module.parameters()} == {"meta"}
    assert module.model.get_input_embeddings().weight.shape[0] >= len(module.tokenizer)


def test_gradient_checkpointing_without_deprecation_warning(files):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = _module(files, gradient_checkpointing=True)
        module.configure_model()
    assert not [w for w in caught if "deprecated" in str(w.message)]
    assert module.model.is_activation_checkpointing
    layer = module.model.model.layers[0]
    assert layer.gradient_checkpointing and layer._gradient_checkpointing_func.keywords == {"use_reentrant": False}


def test_fit_checkpoint_load_validate_and_export_keep_the_weights(files, tmp_path):
    from transformers import AutoModelForCausalLM

    from lm_latent.finetune.export import export_checkpoint

    module, dm = _module(files), datamodule(files, global_batch_size=8)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    _trainer(tmp_path, 3, [ckpt]).fit(module, dm)
    last = str(tmp_path / "ck" / "last.ckpt")
    trained = {k: v.clone() for k, v in module.state_dict().items()}

    def same_weights(state: dict, prefix: str = "") -> None:
        assert {prefix + k for k in state} == set(trained)
        for name, p in state.items():
            assert torch.equal(p, trained[prefix + name]), name

    same_weights(MixedTokenLM.load_from_checkpoint(last, map_location="cpu").state_dict())
    # A fresh module handed to the Trainer with --ckpt_path: configure_model builds it, then the weights load.
    fresh = _module(files)
    validator = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                           enable_checkpointing=False, default_root_dir=tmp_path)
    theirs = validator.validate(fresh, dm, ckpt_path=last, verbose=False)
    same_weights(fresh.state_dict())
    assert theirs == validator.validate(module, dm, verbose=False)
    export_checkpoint(last, tmp_path / "hf")
    same_weights(AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).state_dict(), prefix="model.")


def test_model_and_data_vocabularies_must_agree(files, tmp_path):
    module = MixedTokenLM(TINY_LLAMA, tokenizer_dir=files["tokenizer_dir"], num_codes=K + 1)
    with pytest.raises(ValueError, match="does not match the data's"):
        _trainer(tmp_path, 1).fit(module, datamodule(files))


def test_lr_schedule():
    f = lr_factor("cosine", warmup_steps=4, total_steps=104, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(54) == pytest.approx(0.55) and f(104) == pytest.approx(0.1)
    assert lr_factor("linear", 0, 10, 0.0)(5) == pytest.approx(0.5)
    assert lr_factor("constant", 2, 10, 0.0)(7) == 1.0
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        MixedTokenLM(TINY_LLAMA, tokenizer_dir=".", lr_schedule="step")


def test_a_pretrained_model_is_fine_tuned_in_train_mode(tmp_path):
    """from_pretrained returns eval mode; a fine-tune must not inherit it (dropout would be off)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from lm_latent.finetune.model import build_model

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, resid_pdrop=0.1)).save_pretrained(tmp_path / "m")
    model = build_model({"pretrained": str(tmp_path / "m")})
    assert all(m.training for m in model.modules())
