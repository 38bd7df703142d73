"""Turns OpenAI-style chat messages into the one prompt string a completion model continues. Pure.

With tiny-chat's template (config.json "chat_template"):

    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ->  "System: Be brief.\\nUser: Hi\\nAssistant:"

Each message is the template's turn ("{role}: {content}\\n") with the role's name from role_names, in order;
the generation prompt ("Assistant:") follows the last one. Token counts are of this string.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from gpumesh_models.model_format import ChatTemplate


@dataclass(frozen=True)
class ChatMessage:
    role: str  # one of model_format.CHAT_ROLES
    content: str


def render_chat_prompt(template: ChatTemplate, messages: Sequence[ChatMessage]) -> str:
    turns = []
    for message in messages:
        # Plain replace, not str.format: message text may hold braces of its own.
        role_name = template.role_names[message.role]
        turns.append(template.turn.replace("{role}", role_name).replace("{content}", message.content))
    return "".join(turns) + template.generation_prompt
