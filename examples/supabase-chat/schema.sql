-- A typical Supabase chat schema: conversations, participants with a last-read marker, and
-- messages, under row-level security for the roles PostgREST runs as. Nothing here knows about
-- counts except public.counts_unread, the function counts reads (COUNTS_UNREAD_FUNCTION).

create table public.conversations (
    id         uuid        primary key default gen_random_uuid(),
    created_by uuid        not null default auth.uid(),
    title      text,
    created_at timestamptz not null default now()
);

create table public.participants (
    conversation_id uuid        not null references public.conversations (id) on delete cascade,
    user_id         uuid        not null,
    joined_at       timestamptz not null default now(),
    last_read_at    timestamptz,  -- the read receipt; null: nothing read since joining
    -- The participant's own settings: what the conversation adds to totals, badge and alerts
    -- (all, mentions: only mentions of them, none), and "mark as unread" (the app clears it
    -- with the next read receipt).
    notify          text        not null default 'all' check (notify in ('all', 'mentions', 'none')),
    marked_unread   boolean     not null default false,
    primary key (conversation_id, user_id)
);
create index participants_by_user on public.participants (user_id);

create table public.messages (
    id              uuid        primary key default gen_random_uuid(),
    conversation_id uuid        not null references public.conversations (id) on delete cascade,
    sender_id       uuid        not null default auth.uid(),
    body            text        not null,
    -- Whom the sender mentions, resolved by the app (never parsed by counts): participants, or
    -- everyone in the conversation.
    mentions        uuid[]      not null default '{}',
    mentions_all    boolean     not null default false,
    created_at      timestamptz not null default now()
);
create index messages_by_conversation on public.messages (conversation_id, created_at);

-- What counts serves: one row per (user, conversation) with unread messages, that is messages
-- from others newer than the user's read receipt (or, before any, than their joining), or marked
-- unread; with those of them that mention the user, and the participant's settings. counts reads
-- the columns by name (mentions, notify, marked_unread and parent_id are each optional).
-- counts calls it as the role in its DATABASE_URL, which must see every row (the tables' owner
-- does: row-level security does not apply to it).
create function public.counts_unread(user_ids uuid[])
returns table (user_id uuid, conversation_id uuid, unread bigint, mentions bigint, notify text,
               marked_unread boolean)
language sql stable
set search_path = ''
as $$
    select p.user_id, p.conversation_id, count(m.id),
           count(m.id) filter (where p.user_id = any (m.mentions) or m.mentions_all),
           p.notify, p.marked_unread
    from public.participants p
    left join public.messages m
      on m.conversation_id = p.conversation_id
     and m.created_at > coalesce(p.last_read_at, p.joined_at)
     and m.sender_id <> p.user_id
    where p.user_id = any (user_ids)
    group by p.user_id, p.conversation_id, p.notify, p.marked_unread
    having count(m.id) > 0 or p.marked_unread
$$;

-- Row-level security: users see the conversations they take part in; the creator of a
-- conversation adds and removes participants and may delete it; users post as themselves,
-- delete their own messages, mark their own reads, and leave.

-- Security definer, so that the policies on participants can ask it without recursing into
-- themselves (the usual Supabase pattern).
create function public.is_participant(conversation uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
    select exists (select 1 from public.participants p
                   where p.conversation_id = conversation and p.user_id = auth.uid())
$$;

create function public.created_by_me(conversation uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
    select exists (select 1 from public.conversations c
                   where c.id = conversation and c.created_by = auth.uid())
$$;

alter table public.conversations enable row level security;
alter table public.participants enable row level security;
alter table public.messages enable row level security;

create policy "see my conversations" on public.conversations for select
    using (created_by = auth.uid() or public.is_participant(id));
create policy "start conversations" on public.conversations for insert
    with check (created_by = auth.uid());
create policy "delete conversations I started" on public.conversations for delete
    using (created_by = auth.uid());

create policy "see fellow participants" on public.participants for select
    using (public.is_participant(conversation_id) or public.created_by_me(conversation_id));
create policy "creators add participants" on public.participants for insert
    with check (public.created_by_me(conversation_id));
create policy "mark my own reads and settings" on public.participants for update
    using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy "leave, or creators remove" on public.participants for delete
    using (user_id = auth.uid() or public.created_by_me(conversation_id));

create policy "read messages where I take part" on public.messages for select
    using (public.is_participant(conversation_id));
create policy "post as myself where I take part" on public.messages for insert
    with check (sender_id = auth.uid() and public.is_participant(conversation_id));
create policy "delete my own messages" on public.messages for delete
    using (sender_id = auth.uid());
