// The dashboard's shell: asks for an API key (kept in sessionStorage), then shows the view the hash
// route names. Every view fetches its own data and keeps it fresh (hooks.ts).
import { useEffect, useState } from 'preact/hooks';
import type { Me } from '@drover/protocol';
import { api, session, whenUnauthorized } from './api.js';
import { href, useRoute } from './hooks.js';
import { ChartsView } from './views/charts.js';
import { GroupView, GroupsView } from './views/groups.js';
import { JobView } from './views/job.js';
import { JobsView } from './views/jobs.js';

export function App() {
  const [key, setKey] = useState(session.key());
  const [me, setMe] = useState<Me | undefined>();
  const [refused, setRefused] = useState<string | undefined>();
  const route = useRoute();

  useEffect(() => {
    whenUnauthorized(() => {
      session.signOut();
      setKey(null);
      setRefused('The coordinator refused this key.');
    });
  }, []);
  useEffect(() => {
    if (!key) return;
    api<Me>('/users/me').then(setMe, () => undefined);
  }, [key]);

  if (!key) {
    return (
      <SignIn
        error={refused}
        onKey={(k) => {
          session.signIn(k);
          setRefused(undefined);
          setKey(k);
        }}
      />
    );
  }
  const [section = 'jobs', id] = route.path;
  return (
    <div class="shell">
      <header>
        <a class="brand" href={href(['jobs'])}>
          Drover
        </a>
        <nav>
          <a class={section === 'jobs' ? 'on' : ''} href={href(['jobs'])}>
            Jobs
          </a>
          <a class={section === 'groups' ? 'on' : ''} href={href(['groups'])}>
            Container groups
          </a>
          <a class={section === 'charts' ? 'on' : ''} href={href(['charts'])}>
            Charts
          </a>
        </nav>
        <span class="who">
          {me ? me.username : ''}
          <button
            type="button"
            onClick={() => {
              session.signOut();
              setKey(null);
              setMe(undefined);
            }}
          >
            Sign out
          </button>
        </span>
      </header>
      <main>
        {section === 'jobs' && id ? (
          <JobView id={id} query={route.query} />
        ) : section === 'groups' && id ? (
          <GroupView id={id} />
        ) : section === 'groups' ? (
          <GroupsView />
        ) : section === 'charts' ? (
          <ChartsView />
        ) : (
          <JobsView query={route.query} />
        )}
      </main>
    </div>
  );
}

function SignIn({ onKey, error }: { onKey: (key: string) => void; error: string | undefined }) {
  const [value, setValue] = useState('');
  return (
    <form
      class="signin"
      onSubmit={(e) => {
        e.preventDefault();
        if (value.trim()) onKey(value.trim());
      }}
    >
      <h1>Drover</h1>
      <p>Your API key (the one the CLI and SDK use). It is kept in this tab only.</p>
      <input name="key" type="password" autocomplete="off" placeholder="drv_…" value={value} onInput={(e) => setValue(e.currentTarget.value)} />
      <button type="submit">Sign in</button>
      {error && <p class="error">{error}</p>}
    </form>
  );
}
