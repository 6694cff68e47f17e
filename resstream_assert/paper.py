"""Numbers recovered from the papers' code (spec/paper-claims.md §5): one home for each.

Both are for torchvision ResNet18 with IMAGENET1K_V1 weights (P2 commit ``6b74452``).
The claims compare against them (C8's overlap, C11's accuracies) and the C11 lesion
intervention ablates the channel sets; nothing here imports anything.
"""

from __future__ import annotations

#: Spec §5.2: the P2 scale-invariant channels of blocks 2.1 (23 of 128) and 3.1 (46 of 256), by SM_B.
SCALE_INVARIANT_CHANNELS: dict[str, tuple[int, ...]] = {
    "layer2.1": (108, 21, 25, 127, 56, 47, 18, 52, 35, 67, 48, 72, 110, 106, 105, 13, 15, 88, 30, 124, 31, 36, 68),
    "layer3.1": (113, 198, 67, 69, 204, 188, 164, 137, 144, 149, 147, 132, 180, 88, 126, 141, 48, 135, 187, 250,
                 158, 29, 178, 161, 163, 13, 153, 14, 80, 206, 220, 179, 215, 16, 192, 9, 59, 200, 63, 1, 100, 58,
                 168, 117, 226, 22),
}
#: Channels of those blocks in ResNet18 (the denominators of the 17.97% fractions).
BLOCK_CHANNELS: dict[str, int] = {"layer2.1": 128, "layer3.1": 256}

#: Spec C11 / §5.4: intact ImageNet-val top-1 (%) and top-1 with each set mean-ablated at s = 1.
INTACT_TOP1 = 69.758
LESION_TOP1: dict[str, float] = {"layer2.1": 63.750, "layer3.1": 63.493}
#: ImageNet-val size the accuracies were measured on.
IMAGENET_VAL_IMAGES = 50_000
