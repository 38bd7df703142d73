import { Link } from 'wouter'
import {
  Badge,
  DataTable,
  LinkedRow,
  Loaded,
  NameCell,
  numeric,
  PageHeader,
  Section,
} from '../components/ui.tsx'
import { formatTime } from '../format.ts'
import { useInterval, useResource, useTitle } from '../hooks.tsx'
import { useSession } from '../session.tsx'

// A renter's clusters, newest first.

const refreshMs = 10_000

export function ClustersPage() {
  useTitle('Clusters')
  const { client } = useSession()
  const clusters = useResource(() => client.listClusters({ limit: 100 }), [client])
  useInterval(clusters.reload, refreshMs)
  return (
    <>
      <PageHeader
        title="My clusters"
        actions={
          <Link href="/rent" className="button button-primary" data-testid="clusters-new">
            Rent a cluster
          </Link>
        }
      />
      <Section>
        <Loaded resource={clusters} what="Loading clusters">
          {(reply) => (
            <DataTable
              className="clickable-rows"
              columns={[
                'Cluster',
                'State',
                numeric('Nodes'),
                numeric('GPUs / node'),
                numeric('$ / h'),
                numeric('Charged (GMT)'),
                'Created',
                'Expires',
              ]}
              rows={reply.clusters}
              empty={
                <>
                  No clusters yet. <Link href="/rent">Rent one</Link>.
                </>
              }
            >
              {(cluster) => {
                const href = `/clusters/${encodeURIComponent(cluster.id)}`
                return (
                  <LinkedRow
                    key={cluster.id}
                    href={href}
                    data-testid="cluster-row"
                    data-cluster-id={cluster.id}
                    data-state={cluster.state}
                  >
                    <NameCell id={cluster.id} href={href}>
                      {cluster.name}
                    </NameCell>
                    <td>
                      <Badge>{cluster.state}</Badge>
                    </td>
                    <td className="numeric">{cluster.nodeCount}</td>
                    <td className="numeric">{cluster.gpusPerNode}</td>
                    <td className="numeric">{cluster.pricePerHourUsd}</td>
                    <td className="numeric">{cluster.billing?.chargedGmt ?? '—'}</td>
                    <td className="nowrap">{formatTime(cluster.createdAtMs)}</td>
                    <td className="nowrap">{formatTime(cluster.expiresAtMs)}</td>
                  </LinkedRow>
                )
              }}
            </DataTable>
          )}
        </Loaded>
      </Section>
    </>
  )
}
