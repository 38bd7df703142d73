// Lint: the type-aware rules that catch real bugs (floating promises), plus the package boundaries of
// shared/style.md §1: pure packages import no I/O, and nothing imports the CLI.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const ioModules = ['node:*', 'pg', 'ws', '@electric-sql/pglite', 'fastify', '@fastify/*']
const pureRestriction = {
  'no-restricted-imports': [
    'error',
    {
      patterns: [
        {
          group: ioModules,
          message: 'pure packages do no I/O: take time, ids and data as inputs (style.md §1, §3)',
        },
        {
          group: [
            '@gpumesh/store',
            '@gpumesh/coordinator',
            '@gpumesh/worker',
            '@gpumesh/cli',
            '@gpumesh/sdk',
            '@gpumesh/testing',
          ],
          message: 'pure packages import only other pure packages',
        },
      ],
    },
  ],
}

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.tools/**',
      '.venv/**',
      '.gpumesh/**',
      'bench/results/**',
      'packages/console/dist/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's describe/it return promises the runner itself tracks
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: 'TSEnumDeclaration',
          message: 'use an `as const` object and a union type (style.md §14)',
        },
        { selector: 'TSModuleDeclaration[kind="namespace"]', message: 'namespaces are not erasable syntax' },
        {
          selector: 'TSParameterProperty',
          message: 'constructor parameter properties are not erasable syntax',
        },
      ],
    },
  },
  {
    files: [
      'packages/core/src/**/*.ts',
      'packages/protocol/src/**/*.ts',
      'packages/scheduler/src/**/*.ts',
      'packages/clusters/src/**/*.ts',
      'packages/presence/src/**/*.ts',
      'packages/verification/src/**/*.ts',
      'packages/mesh/src/**/*.ts',
      'packages/ledger/src/**/*.ts',
      'packages/pricing/src/**/*.ts',
      'packages/rewards/src/**/*.ts',
    ],
    ignores: ['**/*.test.ts'],
    rules: pureRestriction,
  },
  {
    files: [
      'packages/coordinator/src/**/*.ts',
      'packages/worker/src/**/*.ts',
      'packages/store/src/**/*.ts',
      'packages/sdk/src/**/*.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['@gpumesh/cli', '@gpumesh/testing'],
              message: 'only tests, sim and bench import testing; nothing imports the CLI',
            },
          ],
        },
      ],
    },
  },
  {
    // The web console (.ts and .tsx, typed by packages/console/tsconfig.json): a browser app over the SDK.
    // Protocol schemas are TypeBox values; the console imports only their types, so TypeBox stays out of the
    // bundle.
    files: ['packages/console/**/*.ts', 'packages/console/**/*.tsx'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@gpumesh/protocol',
              allowTypeImports: true,
              message: 'the console imports protocol types only (values would bundle TypeBox)',
            },
          ],
          patterns: [
            {
              group: [
                'node:*',
                '@gpumesh/store',
                '@gpumesh/coordinator',
                '@gpumesh/worker',
                '@gpumesh/cli',
                '@gpumesh/testing',
              ],
              message: 'the console is a browser app over the SDK (style.md §1)',
            },
          ],
        },
      ],
    },
  },
  {
    // The console's tests run in Node (node:test) against its DOM-free modules.
    files: ['packages/console/test/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': 'off' },
  },
  { files: ['**/*.js'], extends: [tseslint.configs.disableTypeChecked] },
)
