-- Who may do what. Supabase grants every API role everything in `public` by default
-- and relies on RLS; we start from nothing and grant exactly the client contract.

revoke all on all tables in schema public from anon, authenticated;
revoke all on all functions in schema private from public, anon, authenticated;
revoke all on all functions in schema worker from public, anon, authenticated;
alter default privileges for role postgres in schema public revoke all on tables from anon, authenticated;
alter default privileges for role postgres in schema public revoke all on functions from anon, authenticated;
-- Per-schema default privileges can only add to the global ones (EXECUTE for PUBLIC on
-- every new function), so functions made later in `private` and `worker` are revoked
-- again at the end of this file, and must be in any later migration.

alter table public.languages enable row level security;
alter table public.profiles enable row level security;
alter table public.voices enable row level security;
alter table public.generations enable row level security;
alter table public.design_previews enable row level security;
alter table public.tasks enable row level security;
alter table private.credit_ledger enable row level security;

grant select on public.languages to anon, authenticated;
create policy "anyone can read languages" on public.languages
  for select to anon, authenticated using (true);

grant select on public.profiles to authenticated;
create policy "users read their own profile" on public.profiles
  for select to authenticated using (id = (select auth.uid()));

grant select, delete on public.voices to authenticated;
-- user_id is insertable so a client that sends its own id works; the insert triggers
-- refuse anyone else's with a clear message.
grant insert (id, user_id, name, language, reference_object_key, reference_transcript, design_preview_id)
  on public.voices to authenticated;
create policy "users read their own voices" on public.voices
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users create their own voices" on public.voices
  for insert to authenticated with check (user_id = (select auth.uid()));
create policy "users delete their own voices" on public.voices
  for delete to authenticated using (user_id = (select auth.uid()));

grant select, delete on public.generations to authenticated;
grant insert (id, user_id, voice_id, text, language, regenerated_from) on public.generations to authenticated;
create policy "users read their own generations" on public.generations
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users create their own generations" on public.generations
  for insert to authenticated with check (user_id = (select auth.uid()));
create policy "users delete their own generations" on public.generations
  for delete to authenticated using (user_id = (select auth.uid()));

grant select, delete on public.design_previews to authenticated;
grant insert (id, user_id, instruct, text, language) on public.design_previews to authenticated;
create policy "users read their own design previews" on public.design_previews
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users create their own design previews" on public.design_previews
  for insert to authenticated with check (user_id = (select auth.uid()));
create policy "users delete their own design previews" on public.design_previews
  for delete to authenticated using (user_id = (select auth.uid()));

grant select on public.tasks to authenticated;
grant update (cancel_requested_at) on public.tasks to authenticated;
create policy "users read their own tasks" on public.tasks
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users cancel their own tasks" on public.tasks
  for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));

-- Realtime: every change reaches the owner's private topic `user:<id>` ("Broadcast
-- from Database"), carrying what the app shows and nothing internal.

create function private.broadcast_record(tbl text, row_data jsonb) returns jsonb
language plpgsql immutable set search_path = '' as $$
begin
  return case tbl
    when 'tasks' then jsonb_build_object(
      'id', row_data -> 'id', 'type', row_data -> 'type', 'status', row_data -> 'status',
      'progress', row_data -> 'progress', 'error', row_data -> 'error', 'cost', row_data -> 'cost',
      'attempts', row_data -> 'attempts', 'generation_id', row_data -> 'generation_id',
      'design_preview_id', row_data -> 'design_preview_id', 'voice_id', row_data -> 'voice_id',
      'cancel_requested_at', row_data -> 'cancel_requested_at', 'created_at', row_data -> 'created_at',
      'started_at', row_data -> 'started_at', 'ended_at', row_data -> 'ended_at')
    when 'profiles' then jsonb_build_object('id', row_data -> 'id', 'credits', row_data -> 'credits')
    else row_data - 'user_id'  -- generations, voices, design_previews hold nothing internal
  end;
end
$$;

create function private.broadcast_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  row_now jsonb := case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end;
  owner uuid := (case when tg_table_name = 'profiles' then row_now ->> 'id' else row_now ->> 'user_id' end)::uuid;
  record_now jsonb;
begin
  if tg_op = 'DELETE' then
    record_now := jsonb_build_object('id', row_now -> 'id');
  else
    record_now := private.broadcast_record(tg_table_name, row_now);
  end if;
  if tg_op = 'UPDATE' and private.broadcast_record(tg_table_name, to_jsonb(old)) = record_now then
    return null;  -- only internal columns changed (heartbeats): nothing to show
  end if;
  perform realtime.send(
    jsonb_build_object('operation', tg_op, 'schema', tg_table_schema, 'table', tg_table_name,
                       'record', record_now),
    tg_op, 'user:' || owner, true);
  return null;
end
$$;

create trigger broadcast_changes after insert or update or delete on public.tasks
  for each row execute function private.broadcast_change();
create trigger broadcast_changes after insert or update or delete on public.generations
  for each row execute function private.broadcast_change();
create trigger broadcast_changes after insert or update or delete on public.voices
  for each row execute function private.broadcast_change();
create trigger broadcast_changes after insert or update or delete on public.design_previews
  for each row execute function private.broadcast_change();
create trigger broadcast_changes after update on public.profiles
  for each row execute function private.broadcast_change();

-- Realtime authorises a join by setting realtime.topic() to the channel and checking
-- a message of that topic; the row's own topic must match too, or a session whose
-- topic is its own could read every other user's rows.
create policy "users receive broadcasts on their own topic" on realtime.messages
  for select to authenticated
  using (extension = 'broadcast' and topic = (select realtime.topic())
         and (select realtime.topic()) = 'user:' || (select auth.uid())::text);
create policy "users broadcast on their own topic" on realtime.messages
  for insert to authenticated
  with check (extension = 'broadcast' and topic = (select realtime.topic())
              and (select realtime.topic()) = 'user:' || (select auth.uid())::text);

-- Postgres Changes, the simpler path: RLS is re-checked per subscriber and change.
alter publication supabase_realtime add table
  public.tasks, public.generations, public.voices, public.design_previews, public.profiles;

-- Storage: private buckets; users read and upload only under their own user-id folder
-- and never write to `generations` (the listener does, with its own credentials).
insert into storage.buckets (id, name, public, file_size_limit, allowed_mime_types) values
  ('references', 'references', false, 52428800,
   array['audio/wav', 'audio/x-wav', 'audio/wave', 'audio/mpeg', 'audio/mp3', 'audio/mp4', 'audio/x-m4a', 'audio/m4a']),
  ('generations', 'generations', false, null, array['audio/wav', 'audio/x-wav'])
on conflict (id) do nothing;

create policy "users read their own references" on storage.objects
  for select to authenticated
  using (bucket_id = 'references' and (storage.foldername(name))[1] = (select auth.uid())::text);
-- Only the recording itself, at <user id>/<voice id>/reference.<ext>: the other keys
-- under a user's folder (normalised audio, previews) are written by the listener.
create policy "users upload their own references" on storage.objects
  for insert to authenticated
  with check (
    bucket_id = 'references'
    and (storage.foldername(name))[1] = (select auth.uid())::text
    and cardinality(storage.foldername(name)) = 2
    and storage.filename(name) ~* '^reference\.(wav|mp3|m4a)$'  -- as the voice trigger: any case
  );
create policy "users read their own generations audio" on storage.objects
  for select to authenticated
  using (bucket_id = 'generations' and (storage.foldername(name))[1] = (select auth.uid())::text);

revoke all on all functions in schema private from public, anon, authenticated, service_role;
revoke all on all functions in schema worker from public, anon, authenticated, service_role;
grant execute on all functions in schema worker to utter_worker;
