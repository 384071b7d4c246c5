CREATE TABLE IF NOT EXISTS public.orders (
  id serial PRIMARY KEY,
  tenant text NOT NULL,
  customer text NOT NULL DEFAULT 'Ada Lovelace',
  ship_to text,
  item text NOT NULL,
  qty int NOT NULL,
  status text NOT NULL DEFAULT 'new',
  total numeric(10,2),
  internal_note text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- The mapping routes by tenant, a non-key column: with FULL, deletes and
-- updates carry the old row, so changecast can route them even for rows it
-- has not seen since it started.
ALTER TABLE public.orders REPLICA IDENTITY FULL;
INSERT INTO public.orders (tenant, customer, ship_to, item, qty, total, internal_note)
SELECT CASE WHEN g % 3 = 0 THEN 'globex' ELSE 'acme' END,
       (ARRAY['Ada Lovelace','Grace Hopper','Alan Turing','Edsger Dijkstra','Barbara Liskov','Ken Thompson'])[g],
       g || ' Market Street, Springfield', 'widget ' || g, g, g * 9.99, 'not for clients'
  FROM generate_series(1, 6) g;
