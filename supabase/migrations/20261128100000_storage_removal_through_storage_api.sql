-- Supabase refuses a direct DELETE on storage.objects (supabase/storage tenant
-- migration 0055-prevent-direct-deletes.sql): only the Storage API removes an
-- object, deleting its row and its file together. So the listener no longer deletes
-- rows here; it removes objects through the storage layer (listener/storage.py) and
-- then tells the database, which confirms that the object is gone. A row still
-- there means the removal did not happen (or another upload took its place): the
-- caller must not consider the object removed, and its cleanup is retried.
create or replace function worker.forget_object(bucket text, object_key text) returns void
language plpgsql security definer set search_path = '' as $$
begin
  if exists (select 1 from storage.objects o where o.bucket_id = bucket and o.name = object_key) then
    raise exception using
      errcode = '55000',
      message = format('storage object %s/%s is still stored', bucket, object_key),
      hint = 'Remove objects through the Storage API (listener/storage.py) before forgetting them.';
  end if;
end
$$;

revoke all on function worker.forget_object(text, text) from public, anon, authenticated, service_role;
grant execute on function worker.forget_object(text, text) to utter_worker;
