import react from '@vitejs/plugin-react'
import { defineConfig } from 'vite'

// The coordinator serves dist/ at `/` and answers every other non-API GET with index.html, so the app
// routes in the browser from the root. `npm run dev` proxies the API to a local network (`gpumesh up`).
const devCoordinatorUrl = 'http://localhost:8080'

export default defineConfig({
  root: new URL('.', import.meta.url).pathname,
  base: '/',
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  server: { proxy: { '/v1': devCoordinatorUrl } },
})
