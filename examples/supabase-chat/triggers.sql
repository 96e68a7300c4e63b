-- The triggers that keep counts' markers right: every write that can change what
-- public.counts_unread returns calls counts.bump() with the users whose counts it may have
-- changed, inside the writing transaction. counts moves their markers once it commits; a
-- rollback bumps nobody. Run after `flask --app app db upgrade` (it creates counts.bump).
--
-- Statement-level, with transition tables: one bump per statement however many rows it touched,
-- so a bulk insert, or the cascade of a conversation's deletion, costs one outbox row.
-- Security definer with an empty search_path (every name qualified), as Supabase recommends for
-- triggers that read other users' rows: they must see every participant whatever the writer's
-- row-level security lets the writer see, and they call counts.bump() as their owner, the role
-- that runs this file (see grants.sql).

-- A write that reads a conversation's participants (a message) or adds one (a join) takes this
-- lock first, so the two serialize per conversation. Otherwise a join could commit between a
-- message reading the participants and that message committing: the joiner would be bumped
-- before the message was visible, and not by the message.
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

-- New messages: everyone in the conversation but the sender has one more unread.
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
    return null;
end
$$;

create trigger counts_bump_insert after insert on public.messages
referencing new table as new_messages
for each statement execute function public.counts_bump_new_messages();

-- Deleted messages: they were unread for some of the others.
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

-- Read receipts (and any other change to a participant row): that user.
create function public.counts_bump_participant_changed() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform counts.bump(array(select o.user_id from before_change o
                              union select n.user_id from after_change n));
    return null;
end
$$;

create trigger counts_bump_update after update on public.participants
referencing old table as before_change new table as after_change
for each statement execute function public.counts_bump_participant_changed();

-- Leaves and removals, and a deleted conversation (its participants go by cascade): those
-- users lose that conversation's unread.
create function public.counts_bump_left() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
    perform counts.bump(array(select l.user_id from left_rows l));
    return null;
end
$$;

create trigger counts_bump_delete after delete on public.participants
referencing old table as left_rows
for each statement execute function public.counts_bump_left();
