-- The most saves that ran at the same moment in each pool, from the runs ledger: for each run,
-- how many runs of its pool had started and not yet finished when it started (itself
-- included). persistd promises it never exceeds the pool's limit (pools.limits).
SELECT i.pool,
       CASE i.pool WHEN 'ssd-a' THEN 1 WHEN 'ssd-b' THEN 2 ELSE 1 END AS pool_limit,
       coalesce(max((SELECT count(*)
                       FROM runs o JOIN instances oi ON oi.id = o.instance_id
                      WHERE oi.pool = i.pool
                        AND o.started_at <= r.started_at
                        AND coalesce(o.finished_at, 'infinity') > r.started_at)), 0) AS peak,
       count(r.id) AS saves
  FROM instances i LEFT JOIN runs r ON r.instance_id = i.id AND r.started_at IS NOT NULL
 GROUP BY i.pool
 ORDER BY i.pool;
