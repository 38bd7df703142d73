import type { Role } from '@gpumesh/core'
import type { ReactNode } from 'react'
import { Link, Redirect, Route, Switch, useLocation } from 'wouter'
import { ErrorBanner, Loading, MissingRole, Notice, PageHeader } from './components/ui.tsx'
import { useTitle } from './hooks.tsx'
import { ClusterPage } from './pages/cluster.tsx'
import { ClustersPage } from './pages/clusters.tsx'
import { ExplorerDevicePage } from './pages/explorer-device.tsx'
import { ExplorerPage } from './pages/explorer.tsx'
import { KeysPage } from './pages/keys.tsx'
import { LoginPage } from './pages/login.tsx'
import { OperatorPage } from './pages/operator.tsx'
import { RentPage } from './pages/rent.tsx'
import { SupplierDevicePage } from './pages/supplier-device.tsx'
import { SupplierDevicesPage } from './pages/supplier-devices.tsx'
import { SupplierEarningsPage } from './pages/supplier-earnings.tsx'
import { SupplierTokensPage } from './pages/supplier-tokens.tsx'
import { WalletPage } from './pages/wallet.tsx'
import { useSession } from './session.tsx'

// The shell: a header with the sections the logged-in key's roles open, and the routes. Private pages send a
// logged-out visitor to /login and back again afterwards.

type NavItem = {
  readonly href: string
  readonly label: string
  readonly testId: string
  /** undefined: public; 'any': any logged-in key; a role: keys with it. */
  readonly needs?: Role | 'any'
  readonly section: string
}

const navItems: readonly NavItem[] = [
  { href: '/', label: 'Explorer', testId: 'nav-explorer', section: 'network' },
  { href: '/rent', label: 'Rent', testId: 'nav-rent', needs: 'renter', section: 'renter' },
  { href: '/clusters', label: 'Clusters', testId: 'nav-clusters', needs: 'renter', section: 'renter' },
  {
    href: '/supplier/devices',
    label: 'Devices',
    testId: 'nav-devices',
    needs: 'supplier',
    section: 'supplier',
  },
  {
    href: '/supplier/earnings',
    label: 'Earnings',
    testId: 'nav-earnings',
    needs: 'supplier',
    section: 'supplier',
  },
  { href: '/supplier/tokens', label: 'Enroll', testId: 'nav-tokens', needs: 'supplier', section: 'supplier' },
  { href: '/operator', label: 'Operator', testId: 'nav-operator', needs: 'operator', section: 'operator' },
  { href: '/wallet', label: 'Wallet', testId: 'nav-wallet', needs: 'any', section: 'account' },
  { href: '/keys', label: 'API keys', testId: 'nav-keys', needs: 'any', section: 'account' },
]

function isActive(href: string, location: string): boolean {
  if (href === '/') return location === '/' || location.startsWith('/explorer')
  return location === href || location.startsWith(`${href}/`)
}

function Header() {
  const session = useSession()
  const [location, navigate] = useLocation()
  const visible = navItems.filter(
    (item) =>
      item.needs === undefined ||
      (session.me !== null && (item.needs === 'any' || session.hasRole(item.needs))),
  )
  return (
    <header className="topbar">
      <div className="topbar-inner">
        <Link href="/" className="brand" aria-label="gpumesh home">
          <span className="brand-mark" aria-hidden="true" />
          gpumesh
        </Link>
        <nav className="nav" aria-label="Main">
          {visible.map((item, index) => (
            <Link
              key={item.href}
              href={item.href}
              data-testid={item.testId}
              className={`nav-link ${isActive(item.href, location) ? 'nav-link-active' : ''} ${
                index > 0 && visible[index - 1]?.section !== item.section ? 'nav-link-section' : ''
              }`}
              aria-current={isActive(item.href, location) ? 'page' : undefined}
            >
              {item.label}
            </Link>
          ))}
        </nav>
        <div className="account">
          {session.me ? (
            <>
              <span
                className="account-name"
                data-testid="account-name"
                title={`key: ${session.me.apiKey.name}`}
              >
                {session.me.account.name}
              </span>
              <span className="account-roles muted">{session.me.apiKey.roles.join(' · ')}</span>
              <button
                type="button"
                className="button button-small"
                data-testid="logout"
                onClick={() => {
                  session.logout()
                  navigate('/')
                }}
              >
                Log out
              </button>
            </>
          ) : session.status === 'checking' ? null : (
            <Link href="/login" className="button button-small button-primary" data-testid="nav-login">
              Log in
            </Link>
          )}
        </div>
      </div>
    </header>
  )
}

/** A page that needs a logged-in key, and a role when given. */
function Private({ needs, children }: { needs?: Role; children: ReactNode }) {
  const session = useSession()
  const [location] = useLocation()
  if (session.status === 'checking') return <Loading what="Checking your API key" />
  if (!session.me) {
    if (session.checkError)
      return <ErrorBanner message={`Could not check your API key: ${session.checkError}`} />
    return <Redirect to={`/login?next=${encodeURIComponent(location)}`} replace />
  }
  if (needs && !session.hasRole(needs)) return <MissingRole role={needs} />
  return <>{children}</>
}

function NotFound() {
  useTitle('Not found')
  return (
    <>
      <PageHeader title="Page not found" />
      <Notice>
        There is no page here. Go to the <Link href="/">network explorer</Link>.
      </Notice>
    </>
  )
}

export function App() {
  return (
    <>
      <Header />
      <main className="page">
        <Switch>
          <Route path="/" component={ExplorerPage} />
          <Route path="/explorer" component={ExplorerPage} />
          <Route path="/explorer/devices/:id">
            {(params) => <ExplorerDevicePage key={params.id} deviceId={params.id} />}
          </Route>
          <Route path="/login" component={LoginPage} />
          <Route path="/rent">
            <Private needs="renter">
              <RentPage />
            </Private>
          </Route>
          <Route path="/clusters">
            <Private needs="renter">
              <ClustersPage />
            </Private>
          </Route>
          <Route path="/clusters/:id">
            {(params) => (
              <Private needs="renter">
                <ClusterPage key={params.id} clusterId={params.id} />
              </Private>
            )}
          </Route>
          <Route path="/wallet">
            <Private>
              <WalletPage />
            </Private>
          </Route>
          <Route path="/supplier/devices">
            <Private needs="supplier">
              <SupplierDevicesPage />
            </Private>
          </Route>
          <Route path="/supplier/devices/:id">
            {(params) => (
              <Private needs="supplier">
                <SupplierDevicePage key={params.id} deviceId={params.id} />
              </Private>
            )}
          </Route>
          <Route path="/supplier/earnings">
            <Private needs="supplier">
              <SupplierEarningsPage />
            </Private>
          </Route>
          <Route path="/supplier/tokens">
            <Private needs="supplier">
              <SupplierTokensPage />
            </Private>
          </Route>
          <Route path="/keys">
            <Private>
              <KeysPage />
            </Private>
          </Route>
          <Route path="/operator">
            <Private needs="operator">
              <OperatorPage />
            </Private>
          </Route>
          <Route>
            <NotFound />
          </Route>
        </Switch>
      </main>
      <footer className="footer muted">
        gpumesh · <a href="/v1/openapi.json">API document</a>
      </footer>
    </>
  )
}
