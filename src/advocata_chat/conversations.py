"""Conversation services: plain async functions over short transactions."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from advocata_chat import messages as writer
from advocata_chat.config import Settings
from advocata_chat.errors import ConversationNotFound, InvalidInput
from advocata_chat.models import (
    Conversation,
    ConversationStatus,
    Message,
    Role,
    Share,
    utcnow,
)
from advocata_chat.schemas import (
    ConversationOut,
    ConversationPage,
    ConversationSummary,
    CreateConversation,
    MessageOut,
    TokenStats,
    UpdateConversation,
)
from advocata_chat.templates import Template


def check_message(settings: Settings, text: str, *, field: str = "message_content") -> str:
    text = text.replace("\x00", "").strip()
    if not text:
        raise InvalidInput("Message must not be empty", detail=[{"loc": ["body", field]}])
    if len(text) > settings.max_message_chars:
        raise InvalidInput(
            f"Message is too long: {len(text)} characters, the limit is "
            f"{settings.max_message_chars}",
            detail=[{"loc": ["body", field], "limit": settings.max_message_chars}],
        )
    return text


def check_instructions(settings: Settings, text: str | None) -> str | None:
    if text is None:
        return None
    if len(text) > settings.max_instructions_chars:
        raise InvalidInput(
            f"Instructions are too long: the limit is {settings.max_instructions_chars} characters",
            detail=[{"loc": ["body", "instructions"], "limit": settings.max_instructions_chars}],
        )
    return text.strip() or None


def check_title(settings: Settings, title: str | None) -> str | None:
    if title is not None and len(title) > settings.max_title_chars:
        raise InvalidInput(
            f"Title is too long: the limit is {settings.max_title_chars} characters",
            detail=[{"loc": ["body", "title"], "limit": settings.max_title_chars}],
        )
    return title


async def owned(
    s: AsyncSession, *, user_id: uuid.UUID, conversation_id: uuid.UUID, for_update: bool = False
) -> Conversation:
    """The user's conversation, or 404 whether it is missing or someone else's."""
    query = select(Conversation).where(
        Conversation.id == conversation_id, Conversation.user_id == user_id
    )
    if for_update:
        query = query.with_for_update()
    conv = await s.scalar(query)
    if conv is None:
        raise ConversationNotFound()
    return conv


async def readable(
    s: AsyncSession, *, user_id: uuid.UUID, conversation_id: uuid.UUID, lawyer: bool = False
) -> Conversation:
    """The user's conversation, or one shared with them when they are a lawyer; else 404."""
    allowed = Conversation.user_id == user_id
    if lawyer:
        shared = select(Share.conversation_id).where(
            Share.conversation_id == Conversation.id, Share.grantee_id == user_id
        )
        # A lawyer never sees what the owner deleted.
        visible = Conversation.status != ConversationStatus.deleted
        allowed = or_(allowed, and_(shared.exists(), visible))
    conv = await s.scalar(select(Conversation).where(Conversation.id == conversation_id, allowed))
    if conv is None:
        raise ConversationNotFound()
    return conv


async def messages_of(
    s: AsyncSession, conversation_id: uuid.UUID, *, superseded: bool = False
) -> list[Message]:
    query = select(Message).where(Message.conversation_id == conversation_id)
    if not superseded:
        query = query.where(Message.superseded_at.is_(None))
    return list(await s.scalars(query.order_by(Message.seq)))


def _out(conv: Conversation, messages: list[Message]) -> ConversationOut:
    base = ConversationSummary.model_validate(conv).model_dump(exclude={"last_message_preview"})
    return ConversationOut(**base, messages=[MessageOut.model_validate(m) for m in messages])


async def create(
    sessions: async_sessionmaker,
    *,
    settings: Settings,
    user_id: uuid.UUID,
    data: CreateConversation,
    templates: dict[str, Template] | None = None,
) -> ConversationOut:
    text = None
    if data.initial_message is not None:
        text = check_message(settings, data.initial_message, field="initial_message")
    title = check_title(settings, data.title)
    if data.template_id is not None:
        template = (templates or {}).get(data.template_id)
        if template is None:
            raise InvalidInput(
                f"Unknown template_id {data.template_id!r}; see GET /api/v1/chat/templates",
                detail=[{"loc": ["body", "template_id"], "known": sorted(templates or {})}],
            )
        title = title or template.title
    now = utcnow()
    conv = Conversation(
        id=uuid.uuid4(),
        user_id=user_id,
        title=title,
        status=ConversationStatus.active,
        total_tokens=0,
        messages_count=0,
        template_id=data.template_id,
        instructions=check_instructions(settings, data.instructions),
        # An untitled conversation is named by the title chain after its first answer.
        title_auto=title is None,
        created_at=now,
        updated_at=now,
        last_message_at=now,
    )
    messages: list[Message] = []
    async with sessions.begin() as s:
        s.add(conv)
        if text is not None:
            msg = Message(conversation_id=conv.id, role=Role.user, content=text, created_at=now)
            await writer.add(s, msg)  # also sets the counters on `conv`
            messages.append(msg)
    return _out(conv, messages)


async def get(
    sessions: async_sessionmaker,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    include_messages: bool = True,
    include_superseded: bool = False,
    lawyer: bool = False,
) -> ConversationOut:
    async with sessions() as s:
        conv = await readable(s, user_id=user_id, conversation_id=conversation_id, lawyer=lawyer)
        messages = []
        if include_messages:
            messages = await messages_of(s, conv.id, superseded=include_superseded)
    return _out(conv, messages)


async def list_page(
    sessions: async_sessionmaker,
    *,
    user_id: uuid.UUID,
    status: ConversationStatus | None,
    limit: int,
    offset: int,
) -> ConversationPage:
    where = [Conversation.user_id == user_id]
    if status is None:
        where.append(Conversation.status != ConversationStatus.deleted)
    else:
        where.append(Conversation.status == status)
    async with sessions() as s:
        total = await s.scalar(select(func.count()).select_from(Conversation).where(*where))
        rows = await s.scalars(
            select(Conversation)
            .where(*where)
            .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
            .limit(limit)
            .offset(offset)
        )
        items = [ConversationSummary.model_validate(c) for c in rows]
    return ConversationPage(
        items=items,
        total=total or 0,
        limit=limit,
        offset=offset,
        has_more=offset + len(items) < (total or 0),
    )


async def update(
    sessions: async_sessionmaker,
    *,
    settings: Settings,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    data: UpdateConversation,
) -> ConversationOut:
    async with sessions.begin() as s:
        conv = await owned(s, user_id=user_id, conversation_id=conversation_id, for_update=True)
        if data.title is not None:
            conv.title = check_title(settings, data.title)
            conv.title_auto = False  # the user named it; the title chain leaves it alone
        if data.instructions is not None:
            conv.instructions = check_instructions(settings, data.instructions)
        if data.status is not None:
            conv.status = data.status
        conv.updated_at = utcnow()
    return await get(sessions, user_id=user_id, conversation_id=conversation_id)


async def soft_delete(
    sessions: async_sessionmaker, *, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    async with sessions.begin() as s:
        conv = await owned(s, user_id=user_id, conversation_id=conversation_id, for_update=True)
        if conv.status != ConversationStatus.deleted:
            conv.status = ConversationStatus.deleted
            conv.updated_at = utcnow()


async def token_stats(sessions: async_sessionmaker, *, user_id: uuid.UUID) -> TokenStats:
    # Tokens spent stay counted after a conversation is deleted: this is a usage figure.
    def n(status: ConversationStatus):
        return func.count(case((Conversation.status == status, 1)))

    query = select(
        func.coalesce(func.sum(Conversation.total_tokens), 0),
        func.count(),
        n(ConversationStatus.active),
        n(ConversationStatus.archived),
        n(ConversationStatus.deleted),
    ).where(Conversation.user_id == user_id)
    async with sessions() as s:
        tokens, total, active, archived, deleted = (await s.execute(query)).one()
    return TokenStats(
        user_id=user_id,
        total_tokens=int(tokens),
        total_conversations=total,
        active_conversations=active,
        archived_conversations=archived,
        deleted_conversations=deleted,
    )
