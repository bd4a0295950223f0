"""English sentences that tests and benchmark scripts speak with espeak-ng."""

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Seven hundred and twenty one people came to the meeting on Tuesday evening.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
]
