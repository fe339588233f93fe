"""lm-latent: Token Assorted (latent + text token reasoning) on PyTorch Lightning.

The package reads like the method:
    data/        canonical examples, readers, generators, tokenization and chunking
    codebook/    stage 1: VQ-VAE over CoT chunks, code cache, decoding
    mixing/      how the first m CoT tokens are replaced by latent codes (strategies, sequences)
    finetune/    stage 2: the mixed-token LLM fine-tune, generation and HF export
    evaluation/  answer checking and the accuracy callbacks
    pipeline/    the one-command experiment (`lm-latent run`)
"""

__version__ = "0.1.0"
