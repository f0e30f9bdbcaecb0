-- Who may see and change the voice library, credit activity, rate card, tiers and
-- tasks, and the Storage policies tied to what a user has paid for. As in
-- 20261127000400, nothing is granted that the client contract does not name.

-- Reference data everyone may read ----------------------------------------------

alter table public.rate_card enable row level security;
alter table public.tier_limits enable row level security;
alter table private.settings enable row level security;
alter table private.request_limits enable row level security;
alter table private.request_counts enable row level security;
alter table private.upload_sweeps enable row level security;
revoke all on public.rate_card, public.tier_limits from anon, authenticated;
grant select on public.rate_card, public.tier_limits to anon, authenticated;
create policy "anyone can read the rate card" on public.rate_card
  for select to anon, authenticated using (true);
create policy "anyone can read the tier limits" on public.tier_limits
  for select to anon, authenticated using (true);

-- Voices: rename and favourite, nothing else ----------------------------------------

grant update (name, is_favorite) on public.voices to authenticated;
create policy "users rename and favourite their own voices" on public.voices
  for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

-- Tasks: only the columns a client is meant to see ---------------------------------
-- Column grants, not a separate table: the listener's functions keep reading and
-- writing msg_id, engine_call_id, claimed_by and heartbeat_at where they are, and
-- Realtime's Postgres Changes checks the same column privileges. A client must name
-- its columns (`select('*')` on tasks is refused); public.task_list serves `*`.

revoke select on public.tasks from authenticated;
grant select (id, type, status, progress, error, cost, attempts, generation_id, design_preview_id,
              voice_id, cancel_requested_at, dismissed_at, created_at, started_at, ended_at)
  on public.tasks to authenticated;
grant update (dismissed_at) on public.tasks to authenticated;

-- The default task list: what a client may see, dismissed tasks left out. It runs with
-- the caller's rights, so the policies and column grants of public.tasks apply.
create view public.task_list with (security_invoker = true) as
  select t.id, t.type, t.status, t.progress, t.error, t.cost, t.attempts, t.generation_id,
         t.design_preview_id, t.voice_id, t.cancel_requested_at, t.dismissed_at, t.created_at,
         t.started_at, t.ended_at
  from public.tasks t
  where t.dismissed_at is null;
comment on view public.task_list is 'The caller''s tasks that are not dismissed, with the columns a client may see.';
revoke all on public.task_list from anon, authenticated;
grant select on public.task_list to authenticated;

-- Credit activity -------------------------------------------------------------------
-- The ledger stays in schema private (no client grants); this view reads it with its
-- owner's rights and shows only the caller's rows. security_barrier keeps a caller's
-- own filters from running before that restriction.

create view public.credit_activity with (security_barrier = true) as
  select l.id, l.created_at, l.reason, l.delta as amount, l.balance_after, l.task_id,
         t.type as task_type
  from private.credit_ledger l
  left join public.tasks t on t.id = l.task_id
  where l.user_id = (select auth.uid());
comment on view public.credit_activity is
  'The caller''s credit changes: charges, refunds and grants, each with the balance it left.';
revoke all on public.credit_activity from anon, authenticated;
grant select on public.credit_activity to authenticated;

-- Storage: what a user may read and upload ----------------------------------------------
-- Audio is readable only once the row it belongs to is finished: a generation's or a
-- preview's audio from completion (audio_object_key is set only then), a voice's
-- normalised reference once it is ready, and the user's own uploaded reference while a
-- voice of theirs names it. Audio stored by an attempt that was then cancelled or
-- failed is never readable, even before cleanup removes it. The subqueries run as the
-- caller, so the tables' own policies keep them to the caller's rows.

drop policy "users read their own references" on storage.objects;
drop policy "users read their own generations audio" on storage.objects;
drop policy "users upload their own references" on storage.objects;

create policy "users read their own finished references" on storage.objects
  for select to authenticated
  using (
    bucket_id = 'references'
    and (storage.foldername(name))[1] = (select auth.uid())::text
    and (exists (select 1 from public.voices v
                 where v.reference_object_key = objects.name
                    or (v.normalized_object_key = objects.name and v.status = 'ready'))
         or exists (select 1 from public.design_previews p where p.audio_object_key = objects.name))
  );
create policy "users read their own finished generations audio" on storage.objects
  for select to authenticated
  using (
    bucket_id = 'generations'
    and (storage.foldername(name))[1] = (select auth.uid())::text
    and exists (select 1 from public.generations g where g.audio_object_key = objects.name)
  );
-- Only the recording itself, at exactly <user id>/<voice uuid>/reference.<wav|mp3|m4a>:
-- no other folder, no empty or `..` segment, nothing else under the user's folder
-- (normalised audio and previews are written by the listener).
create policy "users upload their own references" on storage.objects
  for insert to authenticated
  with check (
    bucket_id = 'references'
    and name ~ ('^' || (select auth.uid())::text
                || '/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
                || '/reference\.([wW][aA][vV]|[mM][pP]3|[mM]4[aA])$')
  );

-- Functions: none callable by API roles -----------------------------------------------

revoke all on all functions in schema private from public, anon, authenticated, service_role;

-- The sweeper runs every 15 minutes where pg_cron is installed (Supabase: enable the
-- pg_cron extension, then run this migration or the cron.schedule call below once).
do $$
begin
  if exists (select 1 from pg_extension where extname = 'pg_cron') then
    perform cron.schedule('utter-sweep', '*/15 * * * *', 'select private.sweep()');
  end if;
end
$$;
