-- Privileges, run by the role that ran `flask --app app db upgrade` and the files before this
-- one (postgres, on Supabase). Supabase grants the table privileges below by default; a plain
-- Postgres needs them.

-- counts.bump() and counts.push(): EXECUTE only for the roles whose code calls them. Our
-- triggers are security definer, so they call them as their owner, the role running this file,
-- which owns both too when it also ran db upgrade: nothing to grant for them. Grant them to
-- service_role for backend jobs that change counts where no trigger sees it. (Security-invoker
-- triggers would run as whoever writes: then grant them to authenticated as well.) Nothing else
-- in the schema counts is granted to anyone.
grant usage on schema counts to service_role;
grant execute on function counts.bump(uuid[]) to service_role;
grant execute on function counts.push(uuid[], uuid[], uuid) to service_role;

-- The app's tables, for the roles PostgREST runs as (row-level security applies to
-- authenticated; service_role bypasses it).
grant usage on schema public to authenticated, service_role;
grant select, insert, delete on public.conversations, public.participants, public.messages
    to authenticated;
grant update (last_read_at, notify, marked_unread) on public.participants to authenticated;
grant all on public.conversations, public.participants, public.messages to service_role;

-- Functions in public are callable over PostgREST (/rpc): keep counts_unread (everyone's
-- counts) and the lock helper to counts' own role.
revoke execute on function public.counts_unread(uuid[]) from public, anon, authenticated;
revoke execute on function public.lock_conversations(uuid[]) from public, anon, authenticated;
