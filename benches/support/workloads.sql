-- Schema and data of the realistic workloads (benches/workloads.rs, scripts/guard-workloads.sh).
-- Applied after the support SQL (roles, auth.uid(), tenant_guard.org_id()) by a superuser, who owns
-- every table (the raw baseline logs in as the owner: no RLS). 100 orgs
-- '00000000-0000-4000-8000-0000000000NN'; the benchmarked principal is user
-- 5f1c1d5e-0000-4000-8000-000000000001 of org 7.

-- The trivial read of benches/guard.rs, and a 100-row page of it.
CREATE TABLE items (id bigserial PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL);
INSERT INTO items (org_id, name)
    SELECT ('00000000-0000-4000-8000-' || lpad((g % 100)::text, 12, '0'))::uuid, 'item ' || g
      FROM generate_series(1, 100000) g;
CREATE INDEX items_org_id_id ON items (org_id, id);
ALTER TABLE items ENABLE ROW LEVEL SECURITY;
ALTER TABLE items FORCE ROW LEVEL SECURITY;
CREATE POLICY items_org ON items FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT ON items TO authenticated;

-- A parent and a child without an org column: 10 projects per org, 100 tasks per project (1 000
-- tasks per org). The child's policy goes through its parent.
CREATE TABLE projects (id bigserial PRIMARY KEY, org_id uuid NOT NULL, name text NOT NULL);
INSERT INTO projects (org_id, name)
    SELECT ('00000000-0000-4000-8000-' || lpad((g % 100)::text, 12, '0'))::uuid, 'project ' || g
      FROM generate_series(1, 1000) g;
CREATE INDEX projects_org_id ON projects (org_id);
CREATE TABLE tasks (id bigserial PRIMARY KEY, project_id bigint NOT NULL REFERENCES projects,
                    title text NOT NULL, status int NOT NULL, estimate int NOT NULL);
INSERT INTO tasks (project_id, title, status, estimate)
    SELECT g % 1000 + 1, 'task ' || g, g % 4, g % 13 FROM generate_series(1, 100000) g;
CREATE INDEX tasks_project_id_id ON tasks (project_id, id);
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE projects FORCE ROW LEVEL SECURITY;
CREATE POLICY projects_org ON projects FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()));
ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tasks_through_project ON tasks FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM projects p
                    WHERE p.id = tasks.project_id AND p.org_id = (SELECT tenant_guard.org_id())));
GRANT SELECT ON projects, tasks TO authenticated;

-- The same children with their own org column (the schema BENCHMARKS.md recommends for joins):
-- `org_tasks.org_id` is kept equal to the project's by a composite foreign key, and the policy is
-- the direct `org_id = (SELECT tenant_guard.org_id())`, no probe of the parent per row.
ALTER TABLE projects ADD CONSTRAINT projects_id_org_id UNIQUE (id, org_id);
CREATE TABLE org_tasks (id bigserial PRIMARY KEY, project_id bigint NOT NULL, org_id uuid NOT NULL,
                        title text NOT NULL, status int NOT NULL, estimate int NOT NULL,
                        FOREIGN KEY (project_id, org_id) REFERENCES projects (id, org_id));
INSERT INTO org_tasks (project_id, org_id, title, status, estimate)
    SELECT t.project_id, p.org_id, t.title, t.status, t.estimate
      FROM tasks t JOIN projects p ON p.id = t.project_id ORDER BY t.id;
CREATE INDEX org_tasks_project_id_id ON org_tasks (project_id, id);
-- The planner's row estimate for `project_id = … AND org_id = …` (the policy's qual) would
-- assume the two independent (1/100 of a project's rows) and pick a nested loop probing
-- `projects` per task; the functional dependency project_id → org_id corrects it.
CREATE STATISTICS org_tasks_project_org (dependencies) ON project_id, org_id FROM org_tasks;
ALTER TABLE org_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY org_tasks_org ON org_tasks FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT ON org_tasks TO authenticated;

-- A write with index maintenance: primary key + (org_id, created_at).
CREATE TABLE events (id bigserial PRIMARY KEY, org_id uuid NOT NULL DEFAULT tenant_guard.org_id(),
                     created_at timestamptz NOT NULL DEFAULT now(), note text NOT NULL);
CREATE INDEX events_org_id_created_at ON events (org_id, created_at);
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY events_org ON events FOR ALL TO authenticated
    USING (org_id = (SELECT tenant_guard.org_id()))
    WITH CHECK (org_id = (SELECT tenant_guard.org_id()));
GRANT SELECT, INSERT ON events TO authenticated;
GRANT USAGE ON SEQUENCE events_id_seq TO authenticated;

-- Membership-policy rows (the Supabase pattern): 10 000 users in 3 orgs each, the benchmarked
-- user in orgs 7, 8 and 9; docs visible to members of their org.
CREATE TABLE memberships (user_id uuid NOT NULL, org_id uuid NOT NULL, role text NOT NULL,
                          PRIMARY KEY (user_id, org_id));
INSERT INTO memberships (user_id, org_id, role)
    SELECT ('00000000-0000-4000-9000-' || lpad(u::text, 12, '0'))::uuid,
           ('00000000-0000-4000-8000-' || lpad(((u + k) % 100)::text, 12, '0'))::uuid, 'member'
      FROM generate_series(1, 10000) u, generate_series(0, 2) k;
INSERT INTO memberships (user_id, org_id, role)
    SELECT '5f1c1d5e-0000-4000-8000-000000000001',
           ('00000000-0000-4000-8000-' || lpad(o::text, 12, '0'))::uuid, 'member'
      FROM generate_series(7, 9) o;
ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY memberships_own ON memberships FOR SELECT TO authenticated
    USING (user_id = (SELECT auth.uid()));
CREATE TABLE docs (id bigserial PRIMARY KEY, org_id uuid NOT NULL, title text NOT NULL);
INSERT INTO docs (org_id, title)
    SELECT ('00000000-0000-4000-8000-' || lpad((g % 100)::text, 12, '0'))::uuid, 'doc ' || g
      FROM generate_series(1, 100000) g;
CREATE INDEX docs_org_id_id ON docs (org_id, id);
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE docs FORCE ROW LEVEL SECURITY;
CREATE POLICY docs_members ON docs FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM memberships m
                    WHERE m.user_id = (SELECT auth.uid()) AND m.org_id = docs.org_id));
GRANT SELECT ON memberships, docs TO authenticated;

ANALYZE;
