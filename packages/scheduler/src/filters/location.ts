import type { FilterPlugin } from '../types.ts'
import { passed } from './passed.ts'

export const regionFilter: FilterPlugin = {
  name: 'region',
  indexKey: (request) => request.region ?? '',
  filter: (node, request) =>
    request.region === undefined || node.region === request.region
      ? passed
      : { pass: false, reason: 'region' },
}

export const countryFilter: FilterPlugin = {
  name: 'country',
  indexKey: (request) => request.country ?? '',
  filter: (node, request) =>
    request.country === undefined || node.country === request.country
      ? passed
      : { pass: false, reason: 'country' },
}
