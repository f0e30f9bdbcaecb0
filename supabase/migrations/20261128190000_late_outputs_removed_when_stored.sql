-- An output stored after its task ended (a cancel, a takeover, a deleted subject) is
-- queued for removal the moment its object row lands, not only when the listener
-- later settles: a listener killed between its upload and worker.complete_task then
-- leaves nothing behind. The Storage API inserts (or, on upsert, updates) the row as
-- it stores the object, on Supabase and in the local stand-in alike.

create index task_outputs_object on private.task_outputs (object_key);

create function private.after_object_stored() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  task public.tasks;
begin
  select t.* into task
  from private.task_outputs o join public.tasks t on t.id = o.task_id
  where o.object_key = new.name and o.bucket = new.bucket_id
  order by t.created_at desc
  limit 1;
  if found and not private.output_is_live(task, new.name) then
    perform private.remove_objects(new.bucket_id, array[new.name]);
  end if;
  return null;
end
$$;
revoke all on function private.after_object_stored() from public, anon, authenticated, service_role;

create trigger utter_late_outputs_removed after insert or update of name, bucket_id, metadata
  on storage.objects for each row execute function private.after_object_stored();
