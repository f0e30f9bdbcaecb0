-- worker.record_object (20261127000300_worker_api.sql), the listener's bookkeeping of
-- an object it stored, wrote any storage.objects row its role asked for: any bucket,
-- a key under another user's folder, a negative size, and over the metadata of a
-- recording a user uploaded. The listener stores only task outputs
-- (private.output_object): under their owner's folder, in `references` or
-- `generations`, never at a user's upload key (`.../reference.<ext>`). Anything else
-- is refused with 22023. Redefined whole; the write itself is unchanged.

create or replace function worker.record_object(
  bucket text, object_key text, size_bytes bigint, mimetype text, owner_id uuid
) returns void
language plpgsql security definer set search_path = '' as $$
begin
  if bucket is null or bucket not in ('references', 'generations') then
    raise exception using errcode = '22023', message = format('record_object: unknown bucket %L', bucket);
  end if;
  if owner_id is null or object_key is null or split_part(object_key, '/', 1) <> owner_id::text then
    raise exception using errcode = '22023',
      message = format('record_object: key %s is not under its owner %s''s folder', object_key, owner_id);
  end if;
  if storage.filename(object_key) ~* '^reference\.' then
    raise exception using errcode = '22023',
      message = format('record_object: %s/%s was uploaded by its owner; the listener does not overwrite uploads',
                       bucket, object_key);
  end if;
  if size_bytes is null or size_bytes < 0 then
    raise exception using errcode = '22023',
      message = format('record_object needs size_bytes >= 0, got %s', coalesce(size_bytes::text, 'null'));
  end if;
  insert into storage.objects (bucket_id, name, owner, owner_id, metadata)
  values (bucket, object_key, owner_id, owner_id::text,
          jsonb_build_object('size', size_bytes, 'mimetype', mimetype))
  on conflict (bucket_id, name) do update
  set metadata = excluded.metadata, updated_at = now();
end
$$;
