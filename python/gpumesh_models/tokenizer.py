"""Character tokens: one token per Unicode code point of the text, so counts are exact and easy to check.

Token ids: the special tokens first, in the order config.json lists them, then the vocabulary's characters in
order. A code point outside the vocabulary (a tab, an accented letter, an emoji) becomes one <unk> token.
Pure.
"""

from collections.abc import Iterable, Sequence

from gpumesh_models.model_format import END_OF_TEXT_TOKEN, UNKNOWN_TOKEN, ModelConfig

# What an <unk> token decodes to (the model is never allowed to generate one; see generation.py).
UNKNOWN_CHARACTER = "\ufffd"


class CharTokenizer:
    def __init__(self, special_tokens: Sequence[str], characters: str):
        self.special_tokens = tuple(special_tokens)
        self.unknown_id = self.special_tokens.index(UNKNOWN_TOKEN)
        self.end_of_text_id = self.special_tokens.index(END_OF_TEXT_TOKEN)
        self.id_by_character = {
            character: len(self.special_tokens) + i for i, character in enumerate(characters)
        }
        self.character_by_id = {token_id: character for character, token_id in self.id_by_character.items()}
        self.vocabulary_size = len(self.special_tokens) + len(characters)

    @classmethod
    def for_config(cls, config: ModelConfig) -> "CharTokenizer":
        return cls(config.special_tokens, config.characters)

    def encode(self, text: str) -> list[int]:
        return [self.id_by_character.get(character, self.unknown_id) for character in text]

    def count(self, text: str) -> int:
        """Tokens in text: its number of code points (len() in Python; not JavaScript's UTF-16 length)."""
        return len(text)

    def decode_one(self, token_id: int) -> str:
        """Text of one token: a character, U+FFFD for <unk>, nothing for the other special tokens."""
        if token_id == self.unknown_id:
            return UNKNOWN_CHARACTER
        return self.character_by_id.get(token_id, "")

    def decode(self, token_ids: Iterable[int]) -> str:
        return "".join(self.decode_one(token_id) for token_id in token_ids)

    def unknown_characters(self, text: str) -> set[str]:
        return {character for character in text if character not in self.id_by_character}
