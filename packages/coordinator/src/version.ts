export const coordinatorVersion = '0.1.0'
