CREATE TABLE IF NOT EXISTS public.orders (
  id serial PRIMARY KEY,
  tenant text NOT NULL,
  item text NOT NULL,
  qty int NOT NULL,
  status text NOT NULL DEFAULT 'new',
  total numeric(10,2),
  internal_note text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.orders (tenant, item, qty, total, internal_note)
SELECT CASE WHEN g % 3 = 0 THEN 'globex' ELSE 'acme' END, 'widget ' || g, g, g * 9.99, 'not for clients'
  FROM generate_series(1, 6) g;
