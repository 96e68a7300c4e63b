-- The triggers that keep counts' markers right: every write that can change what
-- public.counts_unread returns calls counts.bump() with the users whose counts it may have
-- changed, inside the writing transaction. counts moves their markers once it commits; a
-- rollback bumps nobody. Run after `flask --app app db upgrade` (it creates counts.bump and
-- counts.push).
--
-- They also tell push (apps in the background) whom to notify, in the same transaction, with
-- counts.push(alert, badge, conversation_id): a new message alerts the recipients its level lets
-- hear it (notify all; mentions: when it mentions them; none: never); a read receipt that
-- changed the reader's unread, a new notify level or mark, a leave and a deleted message or
-- conversation send
-- a badge-only push to the users whose counts changed, so a badge clears when its user read on
-- another device. Only users with a registered device get a job; the dispatcher pushes their
-- counts as they are when it sends, and a rollback pushes nobody.
--
-- Statement-level, with transition tables: one bump per statement however many rows it touched,
-- so a bulk insert, or the cascade of a conversation's deletion, costs one outbox row.
-- Security definer with an empty search_path (every name qualified), as Supabase recommends for
-- triggers that read other users' rows: they must see every participant whatever the writer's
-- row-level security lets the writer see, and they call counts.bump() and counts.push() as
-- their owner, the role that runs this file (see grants.sql).

-- A write that reads a conversation's participants (a message) or adds one (a join) takes this
-- lock first, so the two serialize per conversation. Otherwise a join could commit between a
-- message reading the participants and that message committing: the joiner would be bumped
-- before the message was visible, and not by the message. A read receipt takes it too, before
-- it looks for the messages it read (see below); a deleted message holds it while it looks for
-- the readers it had not been read by.
create function public.lock_conversations(conversation_ids uuid[]) returns void
language plpgsql
set search_path = ''
as $$
declare
    conversation uuid;
begin
    -- In one order, so that two bulk writes never wait for each other in a cycle.
    for conversation in select distinct c from pg_catalog.unnest(conversation_ids) c order by 1 loop
        perform pg_catalog.pg_advisory_xact_lock(
            pg_catalog.hashtextextended('public.conversations ' || conversation::text, 0));
    end loop;
end
$$;

-- New messages: everyone in the conversation but the sender has one more unread (bumped, muted
-- or not: the conversation's entry changed), and an alert where their level says so.
create function public.counts_bump_new_messages() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform public.lock_conversations(array(select m.conversation_id from new_messages m));
    perform counts.bump(array(
        select distinct p.user_id
        from new_messages m
        join public.participants p
          on p.conversation_id = m.conversation_id and p.user_id <> m.sender_id));
    -- One call per conversation the statement wrote to (almost always one).
    perform counts.push(array_agg(distinct p.user_id), '{}', m.conversation_id)
    from new_messages m
    join public.participants p
      on p.conversation_id = m.conversation_id and p.user_id <> m.sender_id
    where p.notify = 'all'
       or (p.notify = 'mentions' and (p.user_id = any (m.mentions) or m.mentions_all))
    group by m.conversation_id;
    return null;
end
$$;

create trigger counts_bump_insert after insert on public.messages
referencing new table as new_messages
for each statement execute function public.counts_bump_new_messages();

-- Deleted messages: they were unread for some of the others. Those get a badge-only push; a
-- message they had read changes nothing on their devices. (When a deleted conversation takes
-- its messages with it, its participants are pushed by the trigger on participants below.)
create function public.counts_bump_deleted_messages() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform public.lock_conversations(array(select m.conversation_id from old_messages m));
    perform counts.bump(array(
        select distinct p.user_id
        from old_messages m
        join public.participants p
          on p.conversation_id = m.conversation_id and p.user_id <> m.sender_id));
    perform counts.push('{}', array_agg(distinct p.user_id), m.conversation_id)
    from old_messages m
    join public.participants p
      on p.conversation_id = m.conversation_id and p.user_id <> m.sender_id
     and m.created_at > coalesce(p.last_read_at, p.joined_at)
    group by m.conversation_id;
    return null;
end
$$;

create trigger counts_bump_delete after delete on public.messages
referencing old table as old_messages
for each statement execute function public.counts_bump_deleted_messages();

-- Joins: the joiner's counts now include the conversation.
create function public.counts_bump_joined() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform public.lock_conversations(array(select j.conversation_id from joined j));
    perform counts.bump(array(select j.user_id from joined j));
    return null;
end
$$;

create trigger counts_bump_insert after insert on public.participants
referencing new table as joined
for each statement execute function public.counts_bump_joined();

-- Read receipts, notify levels and marks (any change to a participant row): that user. A
-- badge-only push when the level or the mark changed, or the receipt moved past (or back over)
-- a message from someone else, i.e. when the reader's unread changed: apps move the receipt each time a conversation is opened, mostly
-- with nothing new to clear. That question needs the conversation lock: else a message whose
-- transaction began before the read and commits after this looks would be missed here, and
-- its own push, sent before the read commits, would carry the unread the read cleared.
create function public.counts_bump_participant_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform counts.bump(array(select o.user_id from before_change o
                              union select n.user_id from after_change n));
    perform public.lock_conversations(array(select n.conversation_id from after_change n));
    perform counts.push('{}', array_agg(n.user_id), n.conversation_id)
    from before_change o
    join after_change n on n.conversation_id = o.conversation_id and n.user_id = o.user_id
    where o.notify is distinct from n.notify or o.marked_unread is distinct from n.marked_unread
       or exists (
        select from public.messages m
        where m.conversation_id = n.conversation_id and m.sender_id <> n.user_id
          and m.created_at > least(coalesce(o.last_read_at, o.joined_at),
                                   coalesce(n.last_read_at, n.joined_at))
          and m.created_at <= greatest(coalesce(o.last_read_at, o.joined_at),
                                       coalesce(n.last_read_at, n.joined_at)))
    group by n.conversation_id;
    return null;
end
$$;

create trigger counts_bump_update after update on public.participants
referencing old table as before_change new table as after_change
for each statement execute function public.counts_bump_participant_changed();

-- Leaves and removals, and a deleted conversation (its participants go by cascade): those
-- users lose that conversation's unread, and get a badge-only push. All of them: in a cascade
-- the conversation's messages may be gone already, so whether a leaver had unread there cannot
-- be told here.
create function public.counts_bump_left() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform counts.bump(array(select l.user_id from left_rows l));
    perform counts.push('{}', array_agg(l.user_id), l.conversation_id)
    from left_rows l
    group by l.conversation_id;
    return null;
end
$$;

create trigger counts_bump_delete after delete on public.participants
referencing old table as left_rows
for each statement execute function public.counts_bump_left();
